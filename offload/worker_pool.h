// A `pools:` entry as a route target: the Supervisor runs the worker processes; this class
// dispatches requests to them.
//
// Admission: every route limiter that points at the pool uses it as its CapacityGate. A unit
// is taken when a request is admitted and given back when it ends, and the pool admits while
// units held < concurrency_per_worker x ready workers. So waiting for a worker happens in the
// route's own queue (bounded by max_queue and queue_timeout), and when a unit frees the pool
// pumps the limiter whose oldest waiter is oldest, one admission at a time.
//
// Dispatch: an admitted request goes to the least-busy ready worker with a free slot (never a
// starting or stopping one, never beyond concurrency_per_worker), over a keep-alive connection
// of that worker. A unit whose worker vanished before dispatch waits in `pending_` for the
// next free slot.
//
// Per request: request_timeout (the worker is killed and replaced, the client gets 504) and
// slow_after (logged; on_slow runs) are timed here, from the moment the request is handed to a
// worker connection.
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/coalesced_loop.h"
#include "config/config.h"
#include "offload/abandoned_request.h"
#include "offload/dispatch.h"
#include "offload/supervisor.h"
#include "proxy/routing/limiter.h"
#include "proxy/routing/route_limiter.h"
#include "proxy/upstream/target.h"
#include "proxy/upstream/upstream_connection.h"
#include "proxy/uv/timer.h"

namespace loopguard::offload {

class WorkerPool final : public upstream::Target,
                         public routing::CapacityGate,
                         private upstream::ConnectionOwner,
                         private SupervisorEvents {
 public:
  WorkerPool(uv_loop_t* loop, net::BufferPool& buffers, RuntimeDir& dir,
             const config::Pool& config);
  ~WorkerPool() override;
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void start() { supervisor_.start(); }
  void reconfigure(const config::Pool& config) { supervisor_.reconfigure(config); }
  // Stops taking requests and stops every worker (see Supervisor::stop); `done` once every
  // child has exited.
  void stop(std::function<void()> done);
  void kill() { supervisor_.kill(); }
  bool stopped() const { return supervisor_.stopped(); }  // stop() finished

  // Limiters queueing for this pool (PoolBinding::add_waiting_limiter). Held weakly.
  void addWaitingLimiter(const std::shared_ptr<routing::RouteLimiter>& limiter);
  // Before a reload re-registers the limiters of the new snapshot.
  void clearWaitingLimiters() { limiters_.clear(); }

  const config::Pool& config() const { return supervisor_.config(); }
  PoolStats stats() const { return supervisor_.stats(); }

  // Target
  const std::string& name() const override { return name_; }
  upstream::AcquireResult acquire(upstream::TargetWaiter& waiter,
                                  const upstream::AcquireOptions& options) override;
  void cancel(upstream::TargetWaiter& waiter) override;
  void release(upstream::UpstreamConnection* connection, bool reusable) override;
  // The pool's own request_timeout ends a request first (504 and a replaced worker); the
  // exchange's response timeout is only a backstop.
  config::Duration responseTimeout() const override;
  bool retryable(const upstream::UpstreamConnection* connection) const override;
  const char* unavailableReason() const override;
  upstream::WorkerIdentity identifyWorker(
      const upstream::UpstreamConnection& connection) const override;

  // CapacityGate
  bool tryTake() override;
  void giveBack() override;
  bool hasCapacity() const override;

 private:
  // A request that holds a unit and wants a worker connection.
  struct Request {
    upstream::TargetWaiter* waiter = nullptr;  // null once cancelled
    bool fresh = false;
    uint32_t attempts = 0;
    std::string route;
    std::string request_id;
  };
  // A request handed to a worker connection.
  struct Running {
    Worker* worker = nullptr;
    uint64_t started_at = 0;
    bool slow_reported = false;
    bool timed_out = false;
    bool given_up = false;  // by its exchange; the worker is finishing it
    AbandonedRequest* abandoned = nullptr;  // while it does
    std::string route;
    std::string request_id;
  };

  Worker* pick();
  // Puts `request` on `worker`. `sync`: called from acquire(), so a connection ready now is
  // returned (not delivered through the waiter).
  upstream::AcquireResult startOn(Worker& worker, Request request, bool sync);
  void dispatchOrWait(Request request);
  void retryElsewhere(Request request, const char* why);
  void servePending();
  void slotFreed(Worker& worker);
  bool mayStillBeWorking(upstream::UpstreamConnection* connection) const;
  void track(upstream::UpstreamConnection* connection, Worker& worker, Request& request);
  void pumpWaiting();
  void failWaiting();

  // Idle keep-alive connections of a worker.
  upstream::UpstreamConnection* popIdle(Worker& worker);
  void pushIdle(Worker& worker, upstream::UpstreamConnection* connection);
  void removeIdle(Worker& worker, upstream::UpstreamConnection* connection);
  void closeIdle(Worker& worker);

  // Deadlines.
  void armDeadline(uint64_t at);
  void disarmDeadline();
  void onDeadlineTimer();
  void reportSlow(Running& running, uint64_t now);
  void timeOut(upstream::UpstreamConnection* connection);

  // ConnectionOwner
  void onConnectResult(upstream::UpstreamConnection* connection, int status) override;
  void onIdleClosed(upstream::UpstreamConnection* connection) override;
  void onConnectionGone(upstream::UpstreamConnection* connection) override;
  // SupervisorEvents
  void onWorkerReady(Worker& worker) override;
  void onWorkerStopping(Worker& worker) override;
  void onWorkerExited(Worker& worker) override;
  void onCapacityChanged() override;

  static Worker& workerOf(const upstream::UpstreamConnection* connection) {
    return *static_cast<Worker*>(connection->ownerTag);
  }

  uv_loop_t* loop_;
  net::BufferPool& buffers_;
  std::string name_;
  Supervisor supervisor_;
  SlotLedger ledger_;
  std::deque<Request> pending_;
  std::unordered_map<upstream::UpstreamConnection*, Request> connecting_;
  std::unordered_map<upstream::UpstreamConnection*, Running> running_;
  std::vector<std::weak_ptr<routing::RouteLimiter>> limiters_;
  uv::Timer deadline_timer_;
  std::optional<uint64_t> armed_;
  int pump_budget_ = -1;  // >= 0 while pumping one limiter: admissions it may still make
  CoalescedLoop pump_loop_;
  bool available_ = true;
};

}  // namespace loopguard::offload
