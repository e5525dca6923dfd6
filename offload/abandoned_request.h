// A request whose exchange gave up on it (the client left, the route's timeout fired) while a
// worker was still working on it. Closing the connection would free the worker's slot at once,
// yet the worker keeps computing (an app does not stop a CPU-bound handler because its client
// went away), so the next request would make it exceed concurrency_per_worker. Instead the pool
// keeps the connection, and the slot, until the worker has sent its whole response (read and
// discarded here) or closes; request_timeout still applies. Waiting for the end of the response,
// not its first byte, matters: a worker counts the request as its own until it has written all
// of it.
#pragma once

#include "proxy/http/message_parser.h"
#include "proxy/upstream/upstream_connection.h"

namespace loopguard::offload {

class AbandonedRequest final : private upstream::UpstreamHandler, private http::ParserEvents {
 public:
  // Called once, when the worker is done with the request (or gone); the connection is not
  // reusable (the rest of the response is never read).
  using Done = void (*)(void* owner, upstream::UpstreamConnection* connection);

  // Takes over `connection` (its exchange released it); deletes itself once done.
  static AbandonedRequest* start(upstream::UpstreamConnection* connection, Done done,
                                 void* owner);
  // The connection is going away without having told it (never in the normal course): no
  // callback, just the memory.
  static void discard(AbandonedRequest* request) { delete request; }

 private:
  AbandonedRequest(upstream::UpstreamConnection* c, Done done, void* owner)
      : connection_(c), done_(done), owner_(owner) {}
  void finish();

  // UpstreamHandler
  void onUpstreamWritten(int) override {}
  void onUpstreamInput() override;  // parses (and drops) the response; done at its end
  void onUpstreamClosed(int) override { finish(); }
  void onUpstreamFailed(upstream::UpstreamErrorKind, const char*) override { finish(); }
  // ParserEvents: the response is only delimited, never kept.
  int onHeadComplete() override { return 0; }
  void onBodyData(const char*, size_t) override {}
  int onMessageComplete() override;

  upstream::UpstreamConnection* connection_;
  Done done_;
  void* owner_;
  bool complete_ = false;
};

}  // namespace loopguard::offload
