#include "proxy/http/request_target.h"

namespace loopguard::http {

namespace {

bool isAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// reg-name = *( unreserved / pct-encoded / sub-delims ), without pct-encoded (see the header).
bool isRegNameChar(char c) {
  return isAlnum(c) || std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

// port = *DIGIT (RFC 3986 3.2.3: "host:" is valid and means the default port), at most 65535.
bool isValidPort(std::string_view port) {
  if (port.size() > 5) return false;
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

}  // namespace

bool isAbsoluteForm(std::string_view target) {
  return target.starts_with("http://") || target.starts_with("https://");
}

std::string_view targetAuthority(std::string_view target) {
  if (!isAbsoluteForm(target)) return {};
  std::string_view rest = target.substr(target.find("://") + 3);
  return rest.substr(0, rest.find_first_of("/?#"));
}

bool isValidHost(std::string_view host) {
  std::string_view port;
  bool has_port = false;
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos || close < 3) return false;  // "[::]" at the least
    for (char c : host.substr(1, close - 1)) {
      if (hexDigitValue(c) < 0 && c != ':' && c != '.') return false;  // no zone id, no IPvFuture
    }
    if (close + 1 < host.size()) {
      if (host[close + 1] != ':') return false;
      port = host.substr(close + 2);
      has_port = true;
    }
  } else {
    const size_t colon = host.find(':');
    std::string_view name = host.substr(0, colon);
    if (name.empty()) return false;
    for (char c : name) {
      if (!isRegNameChar(c)) return false;
    }
    if (colon != std::string_view::npos) {
      port = host.substr(colon + 1);
      has_port = true;
    }
  }
  return !has_port || isValidPort(port);
}

std::string_view requestHost(std::string_view target, const HeaderMap& headers) {
  if (isAbsoluteForm(target)) return targetAuthority(target);
  return headers.get(HeaderId::Host);
}

}  // namespace loopguard::http
