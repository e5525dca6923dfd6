// What a route points at. Two kinds share this interface: a Cluster (the app's own processes,
// reached over keep-alive pools) and, in offload/, a WorkerPool (processes loopguard runs).
// Either way the request travels over an UpstreamConnection.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "config/config.h"

namespace loopguard::upstream {

class UpstreamConnection;

enum class UpstreamErrorKind { Connect, Reset, Timeout };
const char* errorKindName(UpstreamErrorKind kind);

class TargetWaiter {
 public:
  virtual ~TargetWaiter() = default;
  // A connection ready for one request. `reused`: it served a request before.
  virtual void onTargetReady(UpstreamConnection* connection, bool reused) = 0;
  virtual void onTargetFailed(UpstreamErrorKind kind, const char* why) = 0;
};

struct AcquireOptions {
  bool fresh = false;  // a new connection, not a pooled one (for the one retry)
  // Who asks, for the target's own logs (a worker pool names slow and timed-out requests).
  // Valid during acquire() only.
  std::string_view route;
  std::string_view request_id;
};

struct AcquireResult {
  enum class Kind { Ready, Pending, Failed };
  Kind kind = Kind::Pending;
  UpstreamConnection* connection = nullptr;  // Ready
  const char* why = "";                      // Failed
  static AcquireResult ready(UpstreamConnection* c) { return {Kind::Ready, c, ""}; }
  static AcquireResult pending() { return {Kind::Pending, nullptr, ""}; }
  static AcquireResult failed(const char* why) { return {Kind::Failed, nullptr, why}; }
};

class Target {
 public:
  virtual ~Target() = default;
  virtual const std::string& name() const = 0;

  // Ready: a pooled connection usable now (no callback follows). Pending: exactly one waiter
  // callback follows later, unless cancel() first. Failed: nothing follows; `why` says why.
  virtual AcquireResult acquire(TargetWaiter& waiter, const AcquireOptions& options) = 0;
  virtual void cancel(TargetWaiter& waiter) = 0;

  // The request on `connection` is over. `reusable`: both messages complete and keep-alive.
  virtual void release(UpstreamConnection* connection, bool reusable) = 0;

  // Until the response head, once the request is sent.
  virtual config::Duration responseTimeout() const = 0;
  // The longest silence once bytes move: while the response body streams, or while a write of
  // the request waits for the upstream to take it. A worker pool has no key of its own: its
  // request_timeout already bounds the whole request on a worker (killing the worker, which a
  // proxy-side timeout could not do), so by default this is the same backstop as above.
  virtual config::Duration readTimeout() const { return responseTimeout(); }

  // Whether a request that failed on a reused `connection` before any response byte may be
  // sent again (idempotent only; the Exchange checks that). A worker pool says no when the
  // worker itself died: the request may be what killed it.
  virtual bool retryable(const UpstreamConnection* connection) const {
    (void)connection;
    return true;
  }

  // Non-null when the target cannot serve anything now (e.g. "no_workers"): requests are
  // refused at once with 503 and this reason instead of waiting in the queue.
  virtual const char* unavailableReason() const { return nullptr; }

  // A request failed after its connection was handed out (reset or timeout), for metrics.
  virtual void recordError(UpstreamErrorKind kind) { (void)kind; }
};

}  // namespace loopguard::upstream
