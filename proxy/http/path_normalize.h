// The path of a request-target in the form routing matches, so that an encoding trick cannot
// send a request to a route its decoded form would not match (README "Routing"): every
// percent-escape decoded exactly once (`%63` -> `c`, `%2F` -> `/`, `%252F` -> the text `%2F`),
// then repeated slashes merged and `.`/`..` segments resolved (RFC 3986 5.2.4). What is
// forwarded stays the original target; these forms are only compared against routes.
//
// Refused (Invalid), because no app can be relied on to read them the same way the proxy does:
// a path that does not start with `/`, an invalid escape (`%4`, `%zz`), NUL (`%00`), a backslash
// literal or encoded (`%5C`: some servers read it as `/`), a space, control character or byte
// >= 0x80 that is not percent-encoded, and `..` climbing above the root.
//
// Pure functions, no allocation beyond `out`; a libFuzzer target drives normalizePath.
#pragma once

#include <string>
#include <string_view>

namespace loopguard::http {

enum class PathStatus { Ok, Invalid };

// Normalises the path part of a request-target (no query) for routing. On Invalid, `out` is
// unspecified and `why` names the problem.
PathStatus normalizePath(std::string_view raw_path, std::string& out, const char** why);

// Only the percent-decoding step of normalizePath (same refusals, but dot segments and repeated
// slashes are kept): the path as an app that decodes and does not resolve sees it (uvicorn and
// Starlette decode the whole path once, `%2F` included, and match routes on the result).
PathStatus decodePath(std::string_view raw_path, std::string& out, const char** why);

}  // namespace loopguard::http
