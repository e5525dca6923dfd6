// What the request path tells the advisor: the narrow interface an Exchange calls, from a few
// lines, for requests of upstream routes only (never pool routes: a pool worker is outside the
// app's loop). Three events per request: its last byte went to the upstream, its response head
// arrived (the completion event), or it ended without a head. The time between the first two is
// upstream time only: loopguard's own queueing is never part of it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string_view>

namespace loopguard::advice {

struct SentRequest {
  std::string_view route;
  std::string_view upstream;
  std::string_view method;
  std::string_view target;          // as received; the advisor folds it to a path template
  const void* connection = nullptr; // the upstream connection: identity while it lives
  uv_stream_t* socket = nullptr;    // its socket, to find the process behind it
  bool first_on_connection = false; // a new connection: look its process up (again)
};

struct ResponseHead {
  // Chunked or close-delimited: a head that may come long before the handler is done, so the
  // response is never counted as somebody's delayed victim.
  bool streamed = false;
};

// 0 = not observed (nothing else to report for it).
using Ticket = uint32_t;

class Observer {
 public:
  virtual ~Observer() = default;
  virtual Ticket onRequestSent(const SentRequest& request) = 0;
  virtual void onResponseHead(Ticket ticket, const ResponseHead& head) = 0;
  // The request ended without a head (error, timeout, client gone, retried elsewhere).
  virtual void onRequestAbandoned(Ticket ticket) = 0;
};

}  // namespace loopguard::advice
