// What loopguard does with the bytes a client sends on one connection, without sockets or a
// loop: the same MessageParser, checkRequestHead, writeUpstreamRequestHead and
// ChunkedValidator calls, in the order ClientConnection and Exchange make them (see
// parseHeadsLoop, Exchange::start/route/sendRequestHead/pumpRequestBody/onRequestBody), with
// an upstream named "app" that reads every request whole before it answers and a catch-all
// route (routed on the normalised path, as Exchange::route does).
//
// It records, for every request the proxy would forward, how the proxy read it and the exact
// bytes it would write upstream; and how the connection ended. The differential fuzz target
// checks those against an independent parser. When Exchange or ClientConnection change how
// they drive the parser or frame the upstream request, this model must follow (the
// integration test test_differential.py checks the real binary and catches a model that lags).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/http/header_rules.h"
#include "proxy/http/message_parser.h"

namespace loopguard::fuzz {

struct ModelOptions {
  uint64_t max_header_bytes = 64 * 1024;  // limits.max_header_bytes (the default)
  uint64_t max_body_bytes = 0;            // limits.max_body_bytes, 0 = unlimited
  bool buffer_request = false;            // the route's buffer_request
  uint64_t buffer_limit = 1024 * 1024;    // the route's buffer_limit
  size_t read_size = 0;  // the socket delivers the input in reads of this size (0: one read)
};

struct ModelRequest {
  // loopguard's reading of the request.
  std::string method;
  std::string target;
  int major = 1;
  int minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // HeaderMap, in order
  bool chunked = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool websocket = false;  // forwarded as an upgrade: after the head the bytes are a tunnel
  std::string body;        // the body bytes the parser delivered (decoded); when aborted, the
                           // part that went upstream
  std::string request_id;  // the X-Request-Id the proxy sent
  // How it went.
  bool complete = false;   // the whole request was read and sent upstream
  bool aborted = false;    // refused after its head went upstream (bad chunked body, too large)
  size_t begin = 0;        // where it starts in the client's bytes
  size_t end = 0;          // with complete: where it ends
  std::string upstream;    // the bytes written to the upstream connection for it
};

struct ModelResult {
  std::vector<ModelRequest> forwarded;
  // How the connection ended: 0 = every byte was used (or is waiting for more); else the status
  // of the response the proxy made itself before closing (400, 431, 413...).
  int refusal_status = 0;
  std::string refusal_reason;
  size_t refused_at = 0;  // where the refused request starts
  bool closed = false;    // the proxy closes after the last request (no keep-alive, tunnel)
};

ModelResult runProxyModel(std::string_view client_bytes, const ModelOptions& options);

}  // namespace loopguard::fuzz
