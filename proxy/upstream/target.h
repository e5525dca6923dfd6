// What a route points at. Two kinds share this interface: a Cluster (the app's own processes,
// reached over keep-alive pools) and a worker pool (processes loopguard runs, in offload/, which
// plugs in through a PoolBinding). Either way the exchange gets a Lease for the request (an
// UpstreamConnection of the target's, which only the target knows as such).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"
#include "proxy/upstream/target_waiter.h"

namespace loopguard::routing {
class CapacityGate;
class RouteLimiter;
}  // namespace loopguard::routing

namespace loopguard::upstream {

class Lease;

// Which worker of a pool a connection leads to, for the access log.
struct WorkerIdentity {
  bool known = false;
  uint32_t index = 0;
  int64_t pid = 0;
};

struct AcquireResult {
  enum class Kind { Ready, Pending, Failed };
  Kind kind = Kind::Pending;
  Lease* lease = nullptr;  // Ready
  const char* why = "";    // Failed
  static AcquireResult ready(Lease* l) { return {Kind::Ready, l, ""}; }
  static AcquireResult pending() { return {Kind::Pending, nullptr, ""}; }
  static AcquireResult failed(const char* why) { return {Kind::Failed, nullptr, why}; }
};

class Target {
 public:
  virtual ~Target() = default;
  virtual const std::string& name() const = 0;

  // Ready: a pooled connection usable now (no callback follows). Pending: exactly one waiter
  // callback follows, from the loop's ready queue, unless the wait is cancelled first.
  // Failed: nothing follows; `why` says why.
  virtual AcquireResult acquire(TargetWaiter& waiter, const AcquireOptions& options) = 0;
  // The waiter leaves wherever it waits (the target's queues are WaitLists).
  void cancel(TargetWaiter& waiter) { waiter.cancelWait(); }

  // The request on `lease` (one this target handed out) is over. `reusable`: both messages
  // complete and keep-alive.
  virtual void release(Lease* lease, bool reusable) = 0;

  // Until the response head, once the request is sent.
  virtual config::Duration responseTimeout() const = 0;
  // The longest silence once bytes move: while the response body streams, or while a write of
  // the request waits for the upstream to take it. A worker pool has no key of its own: its
  // request_timeout already bounds the whole request on a worker (killing the worker, which a
  // proxy-side timeout could not do), so by default this is the same backstop as above.
  virtual config::Duration readTimeout() const { return responseTimeout(); }

  // Whether a request that failed on a reused `lease` before any response byte may be
  // sent again (idempotent only; the Exchange checks that). A worker pool says no when the
  // worker itself died: the request may be what killed it.
  virtual bool retryable(const Lease* lease) const {
    (void)lease;
    return true;
  }

  // Non-null when the target cannot serve anything now (e.g. "no_workers"): requests are
  // refused at once with 503 and this reason instead of waiting in the queue.
  virtual const char* unavailableReason() const { return nullptr; }

  // Non-null while the target holds its routes' queues for a reason of its own (a cluster
  // with no endpoints yet): said in the 503 of a request that timed out in such a queue.
  virtual const char* queueHoldReason() const { return nullptr; }

  // A request failed after its connection was handed out (reset or timeout), for metrics.
  virtual void recordError(UpstreamErrorKind kind) { (void)kind; }

  // The pool worker behind `lease` (a worker pool only; a cluster's endpoint is the lease's
  // peer name).
  virtual WorkerIdentity identifyWorker(const Lease& lease) const {
    (void)lease;
    return {};
  }
};

// How a `pool:` route reaches its workers; supplied by offload/ (the proxy knows no processes).
struct PoolBinding {
  std::shared_ptr<Target> target;
  routing::CapacityGate* gate = nullptr;  // free worker slots
  std::function<uint64_t()> capacity;     // ready workers x concurrency_per_worker
  // The pool wants to be told about the limiters that wait on its gate, to pump them.
  std::function<void(const std::shared_ptr<routing::RouteLimiter>&)> add_waiting_limiter;
};
using PoolResolver = std::function<PoolBinding(const std::string& pool_name)>;

}  // namespace loopguard::upstream
