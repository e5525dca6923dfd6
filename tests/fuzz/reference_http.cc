#include "tests/fuzz/reference_http.h"

#include <optional>

namespace loopguard::fuzz {

namespace {

bool isDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool isAlpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
int hexDigit(unsigned char c) {
  if (isDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
// RFC 9110 5.6.2: tchar.
bool isTchar(unsigned char c) {
  if (isDigit(c) || isAlpha(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}
bool isWs(unsigned char c) { return c == ' ' || c == '\t'; }
// RFC 9110 5.5: field-vchar = VCHAR / obs-text, plus SP and HTAB inside a value.
bool isFieldChar(unsigned char c) { return (c >= 0x21 && c != 0x7f) || isWs(c); }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isWs(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && isWs(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Splits a list-valued field (RFC 9110 5.6.1) into its non-empty elements.
std::vector<std::string_view> listElements(std::string_view value) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string_view::npos) comma = value.size();
    std::string_view element = trimOws(value.substr(start, comma - start));
    if (!element.empty()) out.push_back(element);
    start = comma + 1;
  }
  return out;
}

// RFC 9110 7.2: Host = uri-host [ ":" port ]; uri-host = IP-literal / IPv4address / reg-name.
bool validHost(std::string_view host) {
  size_t colon;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    for (char c : host.substr(1, close - 1)) {
      auto u = static_cast<unsigned char>(c);
      if (!(hexDigit(u) >= 0 || c == ':' || c == '.')) return false;
    }
    colon = close + 1;
    if (colon < host.size() && host[colon] != ':') return false;
  } else {
    colon = host.find(':');
    for (char c : host.substr(0, colon)) {
      auto u = static_cast<unsigned char>(c);
      bool unreserved = isAlpha(u) || isDigit(u) || c == '-' || c == '.' || c == '_' || c == '~';
      bool sub_delim = std::string_view("!$&'()*+,;=").find(c) != std::string_view::npos;
      if (!(unreserved || sub_delim || c == '%')) return false;
    }
  }
  if (colon >= host.size()) return true;
  for (char c : host.substr(colon + 1)) {
    if (!isDigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

class Parser {
 public:
  explicit Parser(std::string_view bytes) : b_(bytes) {}

  RefResult run() {
    if (!requestLine() || !fieldLines(r_.request.fields, "header")) return finish();
    r_.head_complete = true;
    r_.head_bytes = pos_;
    if (!framing()) return finish();
    in_body_ = true;
    if (!body()) return finish();
    r_.status = RefStatus::Complete;
    r_.consumed = pos_;
    checkValues();
    return r_;
  }

 private:
  // The steps return false to stop: r_.status is Invalid (set by bad()) or Incomplete.
  bool bad(const std::string& why) {
    r_.status = RefStatus::Invalid;
    r_.why = why;
    r_.invalid_at = pos_;
    r_.invalid_in_body = in_body_;
    return false;
  }
  RefResult finish() {
    if (r_.status != RefStatus::Invalid) {
      r_.status = RefStatus::Incomplete;
      if (r_.head_complete) checkValues();
    }
    return r_;
  }
  bool more() const { return pos_ < b_.size(); }
  unsigned char peek() const { return static_cast<unsigned char>(b_[pos_]); }

  // CRLF at pos_: true and past it; false with Incomplete or Invalid.
  bool crlf() {
    if (!more()) return false;
    if (peek() == '\n') return bad("bare LF");
    if (peek() != '\r') return bad("expected CRLF");
    ++pos_;
    if (!more()) return false;
    if (peek() != '\n') return bad("CR not followed by LF");
    ++pos_;
    return true;
  }

  bool requestLine() {
    // RFC 9112 2.2: a server SHOULD ignore empty lines received before the request-line (and
    // MAY take a lone LF for a line end: before the message, it can change nothing in it).
    while (more() && (peek() == '\r' || peek() == '\n')) {
      if (peek() == '\n') {
        ++pos_;
      } else if (!crlf()) {
        return false;
      }
    }
    RefRequest& q = r_.request;
    while (more() && isTchar(peek())) q.method.push_back(b_[pos_++]);
    if (!more()) return false;
    if (q.method.empty()) return bad("request-line does not start with a method token");
    if (peek() != ' ') return bad("method not followed by one SP");
    ++pos_;
    while (more() && peek() > 0x20 && peek() != 0x7f) q.target.push_back(b_[pos_++]);
    if (!more()) return false;
    if (q.target.empty()) return bad("empty request-target");
    if (peek() != ' ') return bad("request-target not followed by one SP");
    ++pos_;
    static constexpr std::string_view kName = "HTTP/";
    for (char c : kName) {
      if (!more()) return false;
      if (b_[pos_] != c) return bad("bad HTTP-version");
      ++pos_;
    }
    for (int* digit : {&q.major, &q.minor}) {
      if (!more()) return false;
      if (!isDigit(peek())) return bad("bad HTTP-version digit");
      *digit = peek() - '0';
      ++pos_;
      if (digit == &q.major) {
        if (!more()) return false;
        if (peek() != '.') return bad("bad HTTP-version");
        ++pos_;
      }
    }
    return crlf();
  }

  // *( field-line CRLF ) CRLF, for the head and for the trailer section.
  bool fieldLines(std::vector<RefField>& out, const char* what) {
    while (true) {
      if (!more()) return false;
      if (peek() == '\r' || peek() == '\n') return crlf();
      bool head = &out == &r_.request.fields;
      if (isWs(peek()) && head) {
        return bad(std::string(what) + ": line starts with whitespace (obs-fold)");
      }
      RefField f;
      if (const char* problem = isWs(peek()) ? "obs-fold" : fieldLine(f); problem != nullptr) {
        if (!more()) return false;
        if (head) return bad(std::string(what) + ": " + problem);
        // A trailer field is never merged into the head: as long as its line ends where it
        // should, its syntax is a value problem.
        valueProblem("trailer field syntax");
        while (more() && peek() != '\r' && peek() != '\n' && peek() != '\0') ++pos_;
        if (!more()) return false;
        if (peek() == '\0') return bad(std::string(what) + ": NUL in a field line");
      }
      if (!crlf()) return false;
      out.push_back(std::move(f));
    }
  }

  // field-name ":" OWS field-value OWS, up to (not including) the line end; a problem or nullptr.
  const char* fieldLine(RefField& f) {
    while (more() && isTchar(peek())) f.name.push_back(b_[pos_++]);
    if (!more()) return "incomplete";
    if (f.name.empty()) return "line does not start with a token";
    if (isWs(peek())) return "whitespace between field name and colon";
    if (peek() != ':') return "field name not followed by a colon";
    ++pos_;
    size_t start = pos_;
    while (more() && isFieldChar(peek())) ++pos_;
    if (!more()) return "incomplete";
    if (peek() != '\r' && peek() != '\n') return "control byte in a field value";
    f.value = std::string(trimOws(b_.substr(start, pos_ - start)));
    return nullptr;
  }

  bool framing() {
    RefRequest& q = r_.request;
    std::vector<std::string_view> codings;
    bool has_te = false, has_cl = false;
    std::optional<uint64_t> length;
    for (const RefField& f : q.fields) {
      if (refEqualsIgnoreCase(f.name, "transfer-encoding")) {
        has_te = true;
        for (std::string_view c : listElements(f.value)) codings.push_back(c);
      } else if (refEqualsIgnoreCase(f.name, "content-length")) {
        has_cl = true;
        std::vector<std::string_view> values = listElements(f.value);
        if (values.empty()) return bad("empty Content-Length");
        for (std::string_view v : values) {
          uint64_t n = 0;
          for (char c : v) {
            if (!isDigit(static_cast<unsigned char>(c))) return bad("Content-Length not a number");
            auto digit = static_cast<uint64_t>(c - '0');
            if (n > (UINT64_MAX - digit) / 10) return bad("Content-Length beyond 2^64");
            n = n * 10 + digit;
          }
          // RFC 9110 8.6: a list of identical values may be taken as that value.
          if (length && *length != n) return bad("conflicting Content-Length values");
          length = n;
        }
      }
    }
    if (has_te) {
      if (q.major == 1 && q.minor == 0) return bad("Transfer-Encoding in an HTTP/1.0 request");
      if (has_cl) return bad("both Transfer-Encoding and Content-Length");
      // Only chunked, once: any other coding leaves the length unknown (501).
      if (codings.size() != 1 || !refEqualsIgnoreCase(codings[0], "chunked")) {
        return bad("transfer coding other than a single chunked");
      }
      q.framing = RefFraming::Chunked;
    } else if (has_cl) {
      q.framing = RefFraming::ContentLength;
      q.content_length = *length;
    }
    return true;
  }

  bool body() {
    RefRequest& q = r_.request;
    if (q.framing == RefFraming::None) return true;
    if (q.framing == RefFraming::ContentLength) {
      uint64_t have = b_.size() - pos_;
      uint64_t take = have < q.content_length ? have : q.content_length;
      q.body.append(b_.substr(pos_, take));
      pos_ += take;
      return take == q.content_length;
    }
    while (true) {
      uint64_t size = 0;
      int digits = 0;
      int significant = 0;  // chunk-size = 1*HEXDIG: any number of leading zeros, < 2^64
      while (more() && hexDigit(peek()) >= 0) {
        ++digits;
        if ((significant > 0 || peek() != '0') && ++significant > 16) {
          return bad("chunk-size too long");
        }
        size = size * 16 + static_cast<uint64_t>(hexDigit(peek()));
        ++pos_;
      }
      if (!more()) return false;
      if (digits == 0) return bad("chunk-size missing");
      if (!chunkLineEnd()) return false;
      if (size == 0) return fieldLines(q.trailers, "trailer");
      uint64_t have = b_.size() - pos_;
      uint64_t take = have < size ? have : size;
      q.body.append(b_.substr(pos_, take));
      pos_ += take;
      if (take < size) return false;
      if (!crlf()) return false;
    }
  }

  // What follows a chunk-size up to its CRLF. Where that line ends decides the framing, so
  // after the size only whitespace, an extension (from ';') or the CRLF may come: "0x5" or
  // "5 5" are invalid. Inside an extension only LF and NUL are (a parser may end the line
  // there); bad extension syntax leaves every reader at the same CRLF, so it is a value problem.
  bool chunkLineEnd() {
    size_t start = pos_;
    skipWs();
    if (!more()) return false;
    if (peek() == ';') {
      while (more() && peek() != '\r' && peek() != '\n' && peek() != '\0') ++pos_;
      if (!more()) return false;
      if (peek() == '\0') return bad("NUL in a chunk extension");
      if (!validChunkExtensions(b_.substr(start, pos_ - start))) {
        valueProblem("chunk extension syntax");
      }
    } else if (peek() != '\r' && peek() != '\n') {
      return bad("chunk-size followed by a byte other than ';' or CRLF");
    } else if (pos_ > start) {
      valueProblem("whitespace after a chunk-size without an extension");
    }
    return crlf();
  }

  // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), the whole of `s`.
  static bool validChunkExtensions(std::string_view s) {
    size_t i = 0;
    auto ws = [&] {
      while (i < s.size() && isWs(static_cast<unsigned char>(s[i]))) ++i;
    };
    auto token = [&] {
      size_t begin = i;
      while (i < s.size() && isTchar(static_cast<unsigned char>(s[i]))) ++i;
      return i > begin;
    };
    while (true) {
      ws();
      if (i == s.size()) return true;
      if (s[i] != ';') return false;
      ++i;
      ws();
      if (!token()) return false;
      size_t save = i;
      ws();
      if (i == s.size() || s[i] != '=') {
        i = save;
        continue;
      }
      ++i;
      ws();
      if (i < s.size() && s[i] == '"') {
        for (++i;; ++i) {
          if (i == s.size()) return false;
          auto c = static_cast<unsigned char>(s[i]);
          if (c == '"') break;
          if (c == '\\') {
            if (++i == s.size() || !isFieldChar(static_cast<unsigned char>(s[i]))) return false;
          } else if (!isFieldChar(c)) {
            return false;
          }
        }
        ++i;
      } else if (!token()) {
        return false;
      }
    }
  }

  void valueProblem(const char* what) {
    if (r_.value_problem.empty()) r_.value_problem = what;
  }

  void skipWs() {
    while (more() && isWs(peek())) ++pos_;
  }

  // Value rules, once the head is known to be well delimited.
  void checkValues() {
    const RefRequest& q = r_.request;
    auto problem = [&](const char* what) { valueProblem(what); };
    for (char c : q.target) {
      if (static_cast<unsigned char>(c) >= 0x80) problem("non-ASCII byte in the request-target");
    }
    bool origin = q.target[0] == '/';
    bool asterisk = q.target == "*" && q.method == "OPTIONS";
    size_t colon = q.target.find("://");
    bool absolute = colon != std::string::npos && colon > 0 &&
                    isAlpha(static_cast<unsigned char>(q.target[0]));
    for (size_t i = 0; absolute && i < colon; ++i) {
      auto c = static_cast<unsigned char>(q.target[i]);
      absolute = isAlpha(c) || isDigit(c) || c == '+' || c == '-' || c == '.';
    }
    bool authority = q.method == "CONNECT";
    if (!(origin || asterisk || absolute || authority)) problem("invalid request-target form");
    if (q.major != 1) problem("HTTP major version other than 1");
    int hosts = 0;
    for (const RefField& f : q.fields) {
      if (!refEqualsIgnoreCase(f.name, "host")) continue;
      ++hosts;
      if (!validHost(f.value)) problem("invalid Host value");
    }
    if (hosts > 1) problem("more than one Host");
    if (hosts == 0 && q.major == 1 && q.minor >= 1) problem("HTTP/1.1 request without Host");
  }

  std::string_view b_;
  size_t pos_ = 0;
  bool in_body_ = false;
  RefResult r_;
};

}  // namespace

bool refIsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!isTchar(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::vector<std::string_view> refListElements(std::string_view value) { return listElements(value); }

int refHexDigit(char c) { return hexDigit(static_cast<unsigned char>(c)); }

bool refEqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view refNamedHost(std::string_view target, std::string_view host_field) {
  size_t scheme_end = target.find("://");
  if (target.empty() || target[0] == '/' || scheme_end == std::string_view::npos) return host_field;
  std::string_view rest = target.substr(scheme_end + 3);
  return rest.substr(0, rest.find_first_of("/?#"));
}

RefResult parseRequest(std::string_view bytes) { return Parser(bytes).run(); }

}  // namespace loopguard::fuzz
