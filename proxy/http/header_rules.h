// Header rules of a proxy, as pure functions over parsed heads: what makes a request
// unacceptable beyond llhttp's own checks, which headers are hop-by-hop, and how the heads sent
// on each side are written. No sockets, no loop: unit-tested directly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http/header_map.h"

namespace loopguard::http {

// RFC 9110 token characters (header names, methods).
bool isTokenChar(char c);
bool isToken(std::string_view s);

struct HeadProblem {
  int status = 0;  // 0 = acceptable
  const char* message = "";
  explicit operator bool() const { return status != 0; }
};

// The request-level checks RFC 9112 asks of a proxy that llhttp (strict mode) leaves to us:
// version 1.0/1.1 only (505 for 2+), valid header names, no line folding, CONNECT refused (405);
// Host present exactly once on 1.1 (at most once on 1.0) and a valid uri-host[:port]; a
// Transfer-Encoding only on 1.1, never next to Content-Length, never empty, and exactly
// `chunked` (anything else: 501); a target of visible ASCII in origin-form, absolute-form with a
// valid authority and no userinfo, or "*" for OPTIONS.
struct RequestFacts {
  std::string_view method;
  std::string_view target;
  int http_major = 1;
  int http_minor = 1;
  bool has_transfer_encoding = false;
  bool saw_line_folding = false;
};
HeadProblem checkRequestHead(const RequestFacts& facts, const HeaderMap& headers);

// Hop-by-hop: the fixed list plus anything `Connection` names, however many (the head size is
// the bound). Headers the proxy relies on end to end are never dropped because `Connection`
// names them: Host, the framing headers (the proxy writes its own framing, so they are handled
// separately) and the X-Forwarded-* / X-Request-Id it writes itself. Views into `headers`.
class HopByHop {
 public:
  explicit HopByHop(const HeaderMap& headers);
  bool drop(HeaderId id, std::string_view name) const;
  bool drop(std::string_view name) const;
  bool connectionClose() const { return close_; }
  bool connectionKeepAlive() const { return keep_alive_; }
  bool connectionUpgrade() const { return upgrade_; }

 private:
  static constexpr size_t kLinearNames = 8;  // more: sorted, binary search
  std::vector<std::string_view> named_;  // empty (no allocation) for the usual close/keep-alive
  bool close_ = false;
  bool keep_alive_ = false;
  bool upgrade_ = false;
};

bool isFramingHeader(std::string_view name);  // content-length, transfer-encoding

// How a message body is framed on the wire we write.
enum class BodyFraming { None, ContentLength, Chunked, UntilClose };

struct UpstreamRequestParams {
  std::string_view method;
  std::string_view target;
  std::string_view client_ip;      // appended to X-Forwarded-For (empty: unix client, "unix")
  std::string_view request_id;     // always sent as X-Request-Id
  // Host sent for an HTTP/1.0 request that named none: the route's upstream or pool name, as
  // nginx sends $proxy_host ("NAME" for `proxy_pass http://NAME`). Empty: "localhost".
  std::string_view fallback_host;
  BodyFraming framing = BodyFraming::None;
  uint64_t content_length = 0;     // with ContentLength
  bool websocket_upgrade = false;  // forward Upgrade: websocket + Connection: upgrade
};

// Appends the upstream request head (request line, headers, blank line) to `out`.
void writeUpstreamRequestHead(std::string& out, const UpstreamRequestParams& params,
                              const HeaderMap& client_headers);

struct ClientResponseParams {
  int status = 200;
  int client_minor = 1;          // HTTP/1.x of the client
  std::string_view request_id;   // added as X-Request-Id unless the upstream set one
  BodyFraming framing = BodyFraming::None;
  uint64_t content_length = 0;
  bool keep_alive = true;        // false: "Connection: close"
  bool upgrade = false;          // a 101: keep Upgrade + Connection: upgrade
};

// Appends the response head sent to the client, from the upstream's headers.
void writeClientResponseHead(std::string& out, const ClientResponseParams& params,
                             const HeaderMap& upstream_headers);

// A response the proxy makes itself: JSON body {"error","route","request_id"}.
struct ErrorResponse {
  int status = 500;
  std::string_view error;
  std::string_view route;
  std::string_view request_id;
  std::string_view overload_reason;  // non-empty: Retry-After + X-Loopguard-Overload
  uint32_t retry_after_seconds = 1;
  bool keep_alive = false;
  int client_minor = 1;
};
void writeErrorResponse(std::string& out, const ErrorResponse& response);

std::string_view reasonPhrase(int status);
void appendJsonEscaped(std::string& out, std::string_view text);
void appendDecimal(std::string& out, uint64_t value);
void appendHex(std::string& out, uint64_t value);

}  // namespace loopguard::http
