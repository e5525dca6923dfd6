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

#include "common/uv/loop.h"
#include "proxy/upstream/upstream_connection.h"

namespace loopguard::offload {

class AbandonedRequest final : private upstream::UpstreamStreamHandler {
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
  void start();  // from the ready queue: parses what has arrived, then reads on
  void finish();

  // The stream's handler: the response is only delimited (parsed and dropped), never kept.
  http::ParserAction onStreamHead(proxy::HttpStream&) override { return http::ParserAction::Continue; }
  http::ParserAction onStreamBody(proxy::HttpStream&, const char*, size_t) override {
    return http::ParserAction::Continue;
  }
  http::ParserAction onStreamMessageEnd(proxy::HttpStream&) override;
  void onStreamParsed(proxy::HttpStream&, const http::ParseResult& result) override;
  void onStreamWritten(proxy::HttpStream&, int) override {}
  void onStreamEof(proxy::HttpStream&, int) override { finish(); }
  void onUpstreamFailed(upstream::UpstreamErrorKind, const char*) override { finish(); }

  upstream::UpstreamConnection* connection_;
  Owner& owner_;
  uv::ReadyCall start_{this, &uv::bindMethod<AbandonedRequest, &AbandonedRequest::start>};
  bool complete_ = false;
  bool finished_ = false;
};

}  // namespace loopguard::offload
