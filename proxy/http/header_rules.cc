#include "proxy/http/header_rules.h"

#include <algorithm>
#include <array>

#include "proxy/http/request_target.h"

namespace loopguard::http {

namespace {

constexpr std::array<bool, 256> makeTokenTable() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kTokenTable = makeTokenTable();

// The fixed hop-by-hop list (RFC 9110 7.6.1 plus the de-facto Keep-Alive/Proxy-Connection,
// and Expect, which the proxy answers itself).
bool isFixedHopByHop(HeaderId id) {
  switch (id) {
    case HeaderId::Connection:
    case HeaderId::KeepAlive:
    case HeaderId::ProxyConnection:
    case HeaderId::Te:
    case HeaderId::Trailer:
    case HeaderId::Upgrade:
    case HeaderId::ProxyAuthenticate:
    case HeaderId::ProxyAuthorization:
    case HeaderId::Expect:
      return true;
    default:
      return false;
  }
}

// Headers the proxy always writes itself, so copies from either side are dropped.
bool isProxyOwned(HeaderId id) {
  return id == HeaderId::XRequestId || id == HeaderId::XForwardedProto ||
         id == HeaderId::XForwardedHost || id == HeaderId::XForwardedFor;
}

bool isFraming(HeaderId id) {
  return id == HeaderId::ContentLength || id == HeaderId::TransferEncoding;
}

bool lessIgnoreCase(std::string_view a, std::string_view b) {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                      [](char x, char y) { return toLowerAscii(x) < toLowerAscii(y); });
}

void appendHeader(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void appendFraming(std::string& out, BodyFraming framing, uint64_t content_length) {
  if (framing == BodyFraming::ContentLength) {
    out.append("Content-Length: ");
    appendDecimal(out, content_length);
    out.append("\r\n");
  } else if (framing == BodyFraming::Chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  }
}

}  // namespace

bool isTokenChar(char c) { return kTokenTable[static_cast<unsigned char>(c)]; }

bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!isTokenChar(c)) return false;
  }
  return true;
}

namespace {

// Request-target forms (RFC 9112 3.2): origin-form, absolute-form with a valid authority (the
// host the request is routed on), or "*" for OPTIONS. Every byte must be visible ASCII: a byte
// >= 0x80 or a control character is read differently by different servers.
HeadProblem checkTarget(std::string_view method, std::string_view target) {
  if (target.empty()) return {400, "invalid request target"};
  for (char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return {400, "invalid character in the request target"};
  }
  if (target[0] == '/') return {};
  if (target == "*") {
    if (method == "OPTIONS") return {};
    return {400, "asterisk-form target on a method other than OPTIONS"};
  }
  if (!isAbsoluteForm(target)) return {400, "invalid request target"};
  std::string_view authority = targetAuthority(target);
  if (authority.find('@') != std::string_view::npos) {
    return {400, "userinfo in the request target"};
  }
  if (!isValidHost(authority)) return {400, "invalid authority in the request target"};
  return {};
}

HeadProblem checkHost(const RequestFacts& facts, const HeaderMap& headers) {
  size_t hosts = headers.count(HeaderId::Host);
  if (hosts > 1) return {400, "more than one Host header"};
  if (hosts == 0 && facts.http_minor == 1) return {400, "missing Host header"};
  if (hosts == 0) return {};
  std::string_view host = headers.get(HeaderId::Host);
  if (host.empty()) {
    // HTTP/1.0 allows none, and an empty one says the same.
    return facts.http_minor == 1 ? HeadProblem{400, "empty Host header"} : HeadProblem{};
  }
  if (!isValidHost(host)) return {400, "invalid Host header"};
  return {};
}

// The proxy decodes exactly one transfer coding, `chunked`, and forwards the body re-framed as
// chunked: a body with any other coding would reach the app without it (nginx answers 501 too).
// An empty Transfer-Encoding is no coding at all; next to Content-Length it is ambiguous.
HeadProblem checkTransferEncoding(const RequestFacts& facts, const HeaderMap& headers) {
  if (!facts.has_transfer_encoding && headers.count(HeaderId::TransferEncoding) == 0) return {};
  if (facts.http_minor == 0) return {400, "Transfer-Encoding in an HTTP/1.0 request"};
  if (headers.count(HeaderId::ContentLength) > 0) {
    return {400, "both Content-Length and Transfer-Encoding"};
  }
  size_t codings = 0;
  bool chunked = false;
  for (size_t i = 0; i < headers.size(); ++i) {
    if (headers.id(i) != HeaderId::TransferEncoding) continue;
    forEachToken(headers.value(i), [&](std::string_view coding) {
      ++codings;
      chunked = equalsIgnoreCase(coding, "chunked");
    });
  }
  if (codings == 0) return {400, "empty Transfer-Encoding"};
  if (codings > 1 || !chunked) return {501, "unsupported transfer coding"};
  return {};
}

}  // namespace

HeadProblem checkRequestHead(const RequestFacts& facts, const HeaderMap& headers) {
  if (facts.http_major != 1 || facts.http_minor > 1) {
    if (facts.http_major >= 2) return {505, "HTTP version not supported"};
    return {400, "unsupported HTTP version"};
  }
  if (facts.saw_line_folding) return {400, "obsolete line folding in a header"};
  if (facts.method == "CONNECT") return {405, "CONNECT is not supported"};
  for (size_t i = 0; i < headers.size(); ++i) {
    if (!isToken(headers.name(i))) return {400, "invalid header name"};
  }
  if (HeadProblem p = checkHost(facts, headers)) return p;
  if (HeadProblem p = checkTransferEncoding(facts, headers)) return p;
  return checkTarget(facts.method, facts.target);
}

HopByHop::HopByHop(const HeaderMap& headers) {
  for (size_t i = 0; i < headers.size(); ++i) {
    if (headers.id(i) != HeaderId::Connection && headers.id(i) != HeaderId::ProxyConnection) {
      continue;
    }
    forEachToken(headers.value(i), [&](std::string_view token) {
      HeaderId id = classifyHeader(token);
      if (equalsIgnoreCase(token, "close")) {
        close_ = true;
      } else if (id == HeaderId::KeepAlive) {
        keep_alive_ = true;
      } else if (id == HeaderId::Upgrade) {
        upgrade_ = true;
      }
      // Headers dropped anyway need no entry; those the proxy relies on end to end (Host,
      // framing, the ones it writes itself) are never dropped because a peer names them.
      if (isFixedHopByHop(id) || id == HeaderId::Host || isFraming(id) || isProxyOwned(id)) {
        return;
      }
      named_.push_back(token);
    });
  }
  // Bounded only by the head size: past a handful, sort once so that checking each header
  // costs a binary search, not a scan of every name (quadratic in a hostile head).
  if (named_.size() > kLinearNames) {
    std::sort(named_.begin(), named_.end(), lessIgnoreCase);
  }
}

bool HopByHop::drop(HeaderId id, std::string_view name) const {
  if (isFixedHopByHop(id)) return true;
  if (named_.empty() || id == HeaderId::Host || isFraming(id) || isProxyOwned(id)) return false;
  if (named_.size() > kLinearNames) {
    auto it = std::lower_bound(named_.begin(), named_.end(), name, lessIgnoreCase);
    return it != named_.end() && equalsIgnoreCase(*it, name);
  }
  for (std::string_view named : named_) {
    if (equalsIgnoreCase(name, named)) return true;
  }
  return false;
}

bool HopByHop::drop(std::string_view name) const { return drop(classifyHeader(name), name); }

bool isFramingHeader(std::string_view name) { return isFraming(classifyHeader(name)); }

void writeUpstreamRequestHead(std::string& out, const UpstreamRequestParams& p,
                              const HeaderMap& headers) {
  HopByHop hop(headers);
  out.append(p.method);
  out.push_back(' ');
  out.append(p.target);
  out.append(" HTTP/1.1\r\n");
  // Host first (RFC 9112 3.2). The request's own host (an absolute-form target's authority
  // replaces the received Host), or, for an HTTP/1.0 request that named none, the fallback.
  const std::string_view host = requestHost(p.target, headers);
  appendHeader(out, "Host",
               !host.empty()               ? host
               : !p.fallback_host.empty() ? p.fallback_host
                                          : std::string_view("localhost"));

  for (size_t i = 0; i < headers.size(); ++i) {
    HeaderId id = headers.id(i);
    if (id == HeaderId::Host || isFraming(id) || isProxyOwned(id)) continue;
    if (hop.drop(id, headers.name(i))) continue;
    appendHeader(out, headers.name(i), headers.value(i));
  }
  // Every X-Forwarded-For line received folds into one list, in order, with our hop last.
  out.append("X-Forwarded-For: ");
  bool first = true;
  for (size_t i = 0; i < headers.size(); ++i) {
    if (headers.id(i) != HeaderId::XForwardedFor) continue;
    if (headers.value(i).empty()) continue;
    if (!first) out.append(", ");
    out.append(headers.value(i));
    first = false;
  }
  if (!first) out.append(", ");
  out.append(p.client_ip.empty() ? std::string_view("unix") : p.client_ip);
  out.append("\r\n");
  out.append("X-Forwarded-Proto: http\r\n");
  if (!host.empty()) appendHeader(out, "X-Forwarded-Host", host);
  appendHeader(out, "X-Request-Id", p.request_id);
  if (p.websocket_upgrade) {
    out.append("Connection: upgrade\r\nUpgrade: websocket\r\n");
  }
  appendFraming(out, p.framing, p.content_length);
  out.append("\r\n");
}

void writeClientResponseHead(std::string& out, const ClientResponseParams& p,
                             const HeaderMap& headers) {
  HopByHop hop(headers);
  out.append(p.client_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  appendDecimal(out, static_cast<uint64_t>(p.status));
  out.push_back(' ');
  out.append(reasonPhrase(p.status));
  out.append("\r\n");
  bool has_request_id = false;
  for (size_t i = 0; i < headers.size(); ++i) {
    HeaderId id = headers.id(i);
    if (isFraming(id) || hop.drop(id, headers.name(i))) continue;
    if (id == HeaderId::XRequestId) has_request_id = true;
    appendHeader(out, headers.name(i), headers.value(i));
  }
  if (!has_request_id && !p.request_id.empty()) appendHeader(out, "X-Request-Id", p.request_id);
  if (p.upgrade) {
    out.append("Connection: upgrade\r\nUpgrade: websocket\r\n");
  } else if (!p.keep_alive) {
    out.append("Connection: close\r\n");
  } else if (p.client_minor == 0) {
    out.append("Connection: keep-alive\r\n");
  }
  appendFraming(out, p.framing, p.content_length);
  out.append("\r\n");
}

void writeErrorResponse(std::string& out, const ErrorResponse& r) {
  std::string body;
  body.reserve(96);
  body.append("{\"error\": \"");
  appendJsonEscaped(body, r.error);
  body.append("\", \"route\": \"");
  appendJsonEscaped(body, r.route);
  body.append("\", \"request_id\": \"");
  appendJsonEscaped(body, r.request_id);
  body.append("\"}\n");

  out.append(r.client_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
  appendDecimal(out, static_cast<uint64_t>(r.status));
  out.push_back(' ');
  out.append(reasonPhrase(r.status));
  out.append("\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n");
  if (!r.request_id.empty()) appendHeader(out, "X-Request-Id", r.request_id);
  if (!r.overload_reason.empty()) {
    out.append("Retry-After: ");
    appendDecimal(out, r.retry_after_seconds);
    out.append("\r\n");
    appendHeader(out, "X-Loopguard-Overload", r.overload_reason);
  }
  if (!r.keep_alive) {
    out.append("Connection: close\r\n");
  } else if (r.client_minor == 0) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("Content-Length: ");
  appendDecimal(out, body.size());
  out.append("\r\n\r\n");
  out.append(body);
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 200 ? "Informational" : status < 300 ? "OK" : status < 400 ? "Redirect"
                    : status < 500 ? "Client Error" : "Server Error";
  }
}

void appendJsonEscaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20 || u == 0x7f) {
      out.append("\\u00");
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
}

void appendDecimal(std::string& out, uint64_t value) {
  char buf[24];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n > 0) out.push_back(buf[--n]);
}

void appendHex(std::string& out, uint64_t value) {
  static constexpr char kHex[] = "0123456789abcdef";
  char buf[20];
  int n = 0;
  do {
    buf[n++] = kHex[value & 0xf];
    value >>= 4;
  } while (value != 0);
  while (n > 0) out.push_back(buf[--n]);
}

}  // namespace loopguard::http
