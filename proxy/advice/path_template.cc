#include "proxy/advice/path_template.h"

#include "proxy/routing/route_table.h"

namespace loopguard::advice {

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isHex(char c) { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
// Characters of base64, base64url, percent-encoding and the usual id alphabets.
bool isTokenChar(char c) {
  return isDigit(c) || isAlpha(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '=' ||
         c == '+' || c == '%';
}

bool isUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !isHex(s[i])) return false;
  }
  return true;
}

// Long hex: object ids, hashes (12+ hex digits with at least one decimal digit, so a word made
// of a-f letters such as "deadbeefcafe" is hex too but "facade" is a word).
bool isLongHex(std::string_view s) {
  if (s.size() < 12) return false;
  bool digit = false;
  for (char c : s) {
    if (!isHex(c)) return false;
    digit |= isDigit(c);
  }
  return digit;
}

// Long opaque tokens: 20+ characters of an id alphabet mixing letters and digits (base64 ids,
// slugs with a hash), or any segment of 40+ characters.
bool isOpaqueToken(std::string_view s) {
  if (s.size() >= 40) return true;
  if (s.size() < 20) return false;
  bool digit = false, alpha = false;
  for (char c : s) {
    if (!isTokenChar(c)) return false;
    digit |= isDigit(c);
    alpha |= isAlpha(c);
  }
  return digit && alpha;
}

bool isNumber(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!isDigit(c)) return false;
  }
  return true;
}

}  // namespace

bool isIdentifierSegment(std::string_view segment) {
  return isNumber(segment) || isUuid(segment) || isLongHex(segment) || isOpaqueToken(segment);
}

void appendPathTemplate(std::string& out, std::string_view target) {
  std::string_view path = routing::requestPath(target);
  if (path.empty() || path.front() != '/') {
    out.append(path == "*" ? "*" : "/");
    return;
  }
  const size_t start = out.size();
  size_t i = 1;  // after the leading '/'
  for (;;) {
    size_t end = path.find('/', i);
    std::string_view segment = path.substr(i, end == std::string_view::npos ? end : end - i);
    std::string_view piece = isIdentifierSegment(segment) ? std::string_view("{}") : segment;
    if (out.size() - start + 1 + piece.size() > kMaxTemplateBytes - 6) {
      out.append("/{...}");
      return;
    }
    out.push_back('/');
    out.append(piece);
    if (end == std::string_view::npos) return;
    i = end + 1;
  }
}

}  // namespace loopguard::advice
