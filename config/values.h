// Scalar grammars of the config file (durations, sizes, addresses, names), with the reason a
// value was refused. Pure functions without yaml-cpp, shared by the loader, the JSON view and
// tests. The plain bool versions in config/loader.h wrap these.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.h"

namespace loopguard::config {

// "text" in double quotes for messages, cut after 60 bytes (on a UTF-8 character boundary).
std::string quoted(std::string_view text);

// `text` as one line of valid UTF-8: control bytes shown as \n, \t, \r or \xNN, and so is
// every byte that is not part of a well-formed UTF-8 character. Every config error message
// goes through it: an error is one line (FILE:LINE:COL: message), and POST /reload sends the
// messages as JSON strings, which must be UTF-8.
std::string oneLineText(std::string_view text);
// Length of the well-formed UTF-8 character at text[i] (1 to 4), or 0 if none starts there.
size_t utf8CharLength(std::string_view text, size_t i);

// Longest duration accepted anywhere (365 days): far beyond any sane timeout, and small enough
// that "now + duration" in milliseconds can never overflow.
constexpr Duration kMaxDuration{365LL * 24 * 3600 * 1000};

// Grammar: "0" | DIGITS ["." DIGITS] UNIT, UNIT one of ms s m h. No sign, no spaces, no
// compound forms ("1m30s"). A fraction must come out as whole milliseconds ("1.5s" yes,
// "1.5ms" no). On failure `why` says what was wrong.
bool parseDurationDetailed(std::string_view text, Duration& out, std::string& why);

// Grammar: DIGITS [UNIT], UNIT one of B, KiB MiB GiB TiB (powers of 1024), KB kB MB GB TB
// (powers of 1000). Case as written; no fractions, sign or spaces.
bool parseSizeDetailed(std::string_view text, uint64_t& out, std::string& why);

// The shortest spelling parseDuration reads back to the same value: "0s", "250ms", "1500ms",
// "5s", "2m", "1h".
std::string formatDuration(Duration d);

// Upstream and pool names: non-empty, [A-Za-z0-9_.-].
bool isValidName(std::string_view name);

// An HTTP method token (RFC 9110 tchar), e.g. "GET" or "PROPFIND".
bool isHttpToken(std::string_view text);

}  // namespace loopguard::config
