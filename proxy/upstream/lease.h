// What a target hands an exchange for one request: an upstream HttpStream, and the few things
// the exchange tells the connection behind it. The exchange (proxy/session/) sees this and the
// Target, never the connection class: a Cluster's and a worker pool's connections are both an
// UpstreamConnection today, and the relay would not change if one became something else.
#pragma once

#include <cstdint>
#include <string>

#include "proxy/http/message_parser.h"
#include "proxy/stream/http_stream.h"
#include "proxy/upstream/target_waiter.h"

namespace loopguard::upstream {

// The handler of a leased stream: the exchange using it (the response, the request's writes,
// the peer's close), and of the one event that comes from the target instead.
class UpstreamStreamHandler : public proxy::StreamHandler {
 public:
  // The owner gave up on the request (e.g. a worker killed at request_timeout).
  virtual void onUpstreamFailed(UpstreamErrorKind kind, const char* why) = 0;
};

class Lease {
 public:
  virtual proxy::HttpStream& stream() = 0;
  // The response parser (reset by attach()).
  virtual http::MessageParser& parser() = 0;
  // `handler` drives the stream until detach(); the parser is reset for a new response.
  virtual void attach(UpstreamStreamHandler& handler, uint64_t max_head_bytes) = 0;
  // The exchange is done with it; the target's release() decides reuse or close.
  virtual void detach() = 0;
  // The response switched protocols: bytes flow both ways until one side closes.
  virtual void beginTunnel() = 0;
  // The whole request is written: a target that takes back an unfinished request knows the
  // upstream is working on it.
  virtual void markRequestSent() = 0;
  virtual void countRequest() = 0;
  virtual uint64_t requestsServed() const = 0;
  // The endpoint, for the access log ("127.0.0.1:8000", a socket path).
  virtual const std::string& peerName() const = 0;

 protected:
  ~Lease() = default;  // a lease is never destroyed through this interface
};

}  // namespace loopguard::upstream
