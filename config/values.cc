#include "config/values.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <limits>

#include "config/loader.h"

namespace loopguard::config {

std::string quoted(std::string_view text) {
  // Built with append: GCC 12's -Wrestrict misfires on `"\"" + std::string(...)` at -O3.
  constexpr size_t kMaxShown = 60;
  // Cut on a character boundary: half a UTF-8 sequence would show as an escaped byte.
  size_t shown = std::min(text.size(), kMaxShown);
  while (shown > 0 && shown < text.size() &&
         (static_cast<unsigned char>(text[shown]) & 0xC0) == 0x80) {
    --shown;
  }
  std::string out;
  out.reserve(shown + 5);
  out.push_back('"');
  out.append(text.substr(0, shown));
  if (text.size() > shown) out.append("...");
  out.push_back('"');
  return out;
}

size_t utf8CharLength(std::string_view text, size_t i) {
  const auto byte = static_cast<unsigned char>(text[i]);
  size_t extra = 0;
  unsigned char low = 0x80;  // allowed range of the first continuation byte
  unsigned char high = 0xBF;
  if (byte < 0x80) {
    return 1;
  } else if (byte >= 0xC2 && byte <= 0xDF) {
    extra = 1;
  } else if (byte >= 0xE0 && byte <= 0xEF) {
    extra = 2;
    if (byte == 0xE0) low = 0xA0;   // overlong
    if (byte == 0xED) high = 0x9F;  // UTF-16 surrogates
  } else if (byte >= 0xF0 && byte <= 0xF4) {
    extra = 3;
    if (byte == 0xF0) low = 0x90;   // overlong
    if (byte == 0xF4) high = 0x8F;  // beyond U+10FFFF
  } else {
    return 0;
  }
  for (size_t k = 1; k <= extra; ++k) {
    const auto next = i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0;
    if (next < (k == 1 ? low : 0x80) || next > (k == 1 ? high : 0xBF)) return 0;
  }
  return extra + 1;
}

std::string oneLineText(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    size_t len = utf8CharLength(text, i);
    if (len > 1 || (len == 1 && byte >= 0x20 && byte != 0x7F)) {
      out.append(text.substr(i, len));
      i += len;
      continue;
    }
    if (byte == '\n') {
      out.append("\\n");
    } else if (byte == '\t') {
      out.append("\\t");
    } else if (byte == '\r') {
      out.append("\\r");
    } else {
      out.append("\\x");
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xF]);
    }
    ++i;
  }
  return out;
}

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Reads a run of decimal digits into `out`; false if empty or it overflows.
bool readDigits(std::string_view& text, uint64_t& out, size_t& count) {
  out = 0;
  count = 0;
  while (count < text.size() && isDigit(text[count])) {
    uint64_t digit = static_cast<uint64_t>(text[count] - '0');
    if (out > (std::numeric_limits<uint64_t>::max() - digit) / 10) return false;
    out = out * 10 + digit;
    ++count;
  }
  text.remove_prefix(count);
  return count > 0;
}


// Sizes of struct sockaddr_un::sun_path minus the terminating NUL.
constexpr size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;

bool isValidDnsName(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);  // fully qualified
  if (host.empty() || host.size() > 253) return false;
  size_t label_len = 0;
  char prev = '.';
  for (char c : host) {
    if (c == '.') {
      if (label_len == 0 || prev == '-') return false;
      label_len = 0;
    } else if (isAlpha(c) || isDigit(c) || c == '_' || (c == '-' && label_len > 0)) {
      // '_' is not legal in host names proper but common in container service names.
      if (++label_len > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return prev != '-';
}

bool parsePort(std::string_view text, uint16_t& out, std::string& why) {
  if (text.empty()) {
    why = "missing port after ':'";
    return false;
  }
  if (text.find_first_not_of("0123456789") != std::string_view::npos) {
    why = "bad port " + quoted(text) + ": expected a number 0-65535";
    return false;
  }
  uint64_t value = 0;
  size_t count = 0;
  std::string_view rest = text;
  if (text.size() > 5 || !readDigits(rest, value, count) || value > 65535) {
    why = "port " + std::string(text) + " out of range (0-65535)";
    return false;
  }
  out = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

bool parseDurationDetailed(std::string_view text, Duration& out, std::string& why) {
  const std::string_view original = text;
  auto bad = [&](std::string detail) {
    why = "bad duration " + quoted(original) + ": " + detail;
    return false;
  };
  if (text == "0") {
    out = Duration{0};
    return true;
  }
  if (text.empty()) return bad("empty");
  if (text.front() == '-') return bad("must not be negative");
  uint64_t whole = 0;
  size_t whole_digits = 0;
  if (!readDigits(text, whole, whole_digits)) {
    return bad("expected a number with a unit, e.g. 250ms, 5s, 2m, 1h");
  }
  uint64_t frac = 0;
  size_t frac_digits = 0;
  if (!text.empty() && text.front() == '.') {
    text.remove_prefix(1);
    if (!readDigits(text, frac, frac_digits) || frac_digits > 9) {
      return bad("expected digits after the decimal point (at most 9)");
    }
  }
  uint64_t unit_ms = 0;
  if (text == "ms") {
    unit_ms = 1;
  } else if (text == "s") {
    unit_ms = 1000;
  } else if (text == "m") {
    unit_ms = 60 * 1000;
  } else if (text == "h") {
    unit_ms = 3600 * 1000;
  } else if (text.empty()) {
    return bad("missing unit (ms, s, m or h), e.g. " + std::string(original) + "s");
  } else {
    return bad("unknown unit " + quoted(text) + " (expected ms, s, m or h)");
  }
  const uint64_t max_ms = static_cast<uint64_t>(kMaxDuration.count());
  if (whole > max_ms / unit_ms)
    return bad("too long (at most " + formatDuration(kMaxDuration) + ")");
  uint64_t ms = whole * unit_ms;
  if (frac_digits > 0) {
    // frac / 10^frac_digits of a unit must be a whole number of milliseconds.
    uint64_t scale = 1;
    for (size_t i = 0; i < frac_digits; ++i) scale *= 10;
    // frac < scale <= 1e9 and unit_ms <= 3.6e6, so the product fits in 64 bits.
    uint64_t numerator = frac * unit_ms;
    if (numerator % scale != 0) return bad("finer than a millisecond");
    ms += numerator / scale;
  }
  if (ms > max_ms) return bad("too long (at most " + formatDuration(kMaxDuration) + ")");
  out = Duration{static_cast<Duration::rep>(ms)};
  return true;
}

bool parseSizeDetailed(std::string_view text, uint64_t& out, std::string& why) {
  const std::string_view original = text;
  auto bad = [&](std::string detail) {
    why = "bad size " + quoted(original) + ": " + detail;
    return false;
  };
  if (text.empty()) return bad("empty");
  if (text.front() == '-') return bad("must not be negative");
  uint64_t value = 0;
  size_t digits = 0;
  if (!readDigits(text, value, digits)) {
    if (digits > 0) return bad("too large");
    return bad("expected a byte count, optionally with a unit, e.g. 512, 64KiB, 10MiB");
  }
  struct Unit {
    std::string_view name;
    uint64_t factor;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"KiB", kKiB},
      {"MiB", kMiB},
      {"GiB", kGiB},
      {"TiB", 1024 * kGiB},
      {"KB", 1000},
      {"kB", 1000},
      {"MB", 1000 * 1000},
      {"GB", 1000 * 1000 * 1000},
      {"TB", 1000ULL * 1000 * 1000 * 1000},
  };
  for (const Unit& unit : kUnits) {
    if (text != unit.name) continue;
    if (value > std::numeric_limits<uint64_t>::max() / unit.factor) return bad("too large");
    out = value * unit.factor;
    return true;
  }
  if (!text.empty() && text.front() == '.') return bad("fractions are not allowed");
  return bad("unknown unit " + quoted(text) +
             " (expected B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)");
}

std::string formatDuration(Duration d) {
  const int64_t ms = d.count();
  if (ms == 0) return "0s";
  if (ms % (3600 * 1000) == 0) return std::to_string(ms / (3600 * 1000)) + "h";
  if (ms % (60 * 1000) == 0) return std::to_string(ms / (60 * 1000)) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

bool isValidName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!isAlpha(c) && !isDigit(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

bool isHttpToken(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (isAlpha(c) || isDigit(c)) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) return false;
  }
  return true;
}

bool parseDuration(std::string_view text, Duration& out) {
  std::string why;
  return parseDurationDetailed(text, out, why);
}

bool parseSize(std::string_view text, uint64_t& out) {
  std::string why;
  return parseSizeDetailed(text, out, why);
}

bool parseAddress(std::string_view text, Address& out, std::string& why) {
  constexpr std::string_view kExpected = " (expected host:port, [v6]:port or unix:/path)";
  if (text.empty()) {
    why = std::string("empty address") + std::string(kExpected);
    return false;
  }
  if (text.starts_with("unix:")) {
    std::string_view path = text.substr(5);
    if (path.empty()) {
      why = "empty unix socket path";
      return false;
    }
    if (path.find('\0') != std::string_view::npos) {
      why = "unix socket path contains a NUL byte";
      return false;
    }
    if (path.size() > kMaxUnixPath) {
      why = "unix socket path too long (" + std::to_string(path.size()) + " bytes, at most " +
            std::to_string(kMaxUnixPath) + ")";
      return false;
    }
    out = Address{};
    out.kind = Address::Kind::Unix;
    out.path = std::string(path);
    return true;
  }
  if (text.find("://") != std::string_view::npos) {
    why = "an address has no scheme: write host:port, not a URL";
    return false;
  }

  std::string host;
  std::string_view port_text;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      why = "missing ']' after IPv6 address";
      return false;
    }
    host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (rest.empty()) {
      why = std::string("missing port") + std::string(kExpected);
      return false;
    }
    if (rest.front() != ':') {
      why = "expected ':' and a port after ']'";
      return false;
    }
    port_text = rest.substr(1);
    // A link-local address may carry a zone ("fe80::1%eth0"); inet_pton does not take it.
    std::string bare = host.substr(0, host.find('%'));
    in6_addr addr6{};
    bool empty_zone = host.size() == bare.size() + 1;
    if (bare.empty() || empty_zone || inet_pton(AF_INET6, bare.c_str(), &addr6) != 1) {
      why = "bad IPv6 address " + quoted(host);
      return false;
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      why = std::string("missing port") + std::string(kExpected);
      return false;
    }
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (host.empty()) {
      why = "missing host (use 0.0.0.0:PORT for every interface)";
      return false;
    }
    if (host.find(':') != std::string::npos) {
      why = "an IPv6 address needs brackets, e.g. [::1]:8080";
      return false;
    }
    bool numeric = host.find_first_not_of("0123456789.") == std::string::npos;
    if (numeric) {
      in_addr addr4{};
      if (inet_pton(AF_INET, host.c_str(), &addr4) != 1) {
        why = "bad IPv4 address " + quoted(host);
        return false;
      }
    } else if (!isValidDnsName(host)) {
      why = "bad host name " + quoted(host);
      return false;
    }
  }
  uint16_t port = 0;
  if (!parsePort(port_text, port, why)) return false;
  out = Address{};
  out.kind = Address::Kind::Tcp;
  out.host = std::move(host);
  out.port = port;
  return true;
}

}  // namespace loopguard::config
