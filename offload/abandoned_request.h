// A request whose exchange gave up on it (the client left, the route's timeout fired) while a
// worker was still working on it. Closing the connection would free the worker's slot at once,
// yet the worker keeps computing (an app does not stop a CPU-bound handler because its client
// went away), so the next request would make it exceed concurrency_per_worker. Instead the pool
// keeps the connection, and the slot, until the worker has sent its whole response (read and
// discarded here) or closes; request_timeout still applies. Waiting for the end of the response,
// not its first byte, matters: a worker counts the request as its own until it has written all
// of it.
//
// Owned by the pool (its Running entry). Its owner hears once that it is over, from inside one
// of its callbacks: the owner then hands it to the loop's deferred delete.
#pragma once

#include "proxy/http/message_parser.h"
#include "proxy/upstream/upstream_connection.h"

namespace loopguard::offload {

class AbandonedRequest final : private upstream::UpstreamHandler, private http::ParserEvents {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    // The worker is done with the request on `connection` (or gone); the connection is detached
    // and not reusable (the rest of the response is never read). Called once, on the request's
    // stack: nothing of it is touched after this returns.
    virtual void onAbandonedDone(upstream::UpstreamConnection* connection) = 0;
  };

  // Takes over `connection` (its exchange released it) until it is done.
  AbandonedRequest(upstream::UpstreamConnection* connection, Owner& owner);
  AbandonedRequest(const AbandonedRequest&) = delete;
  AbandonedRequest& operator=(const AbandonedRequest&) = delete;

 private:
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
  Owner& owner_;
  bool complete_ = false;
  bool finished_ = false;
};

}  // namespace loopguard::offload
