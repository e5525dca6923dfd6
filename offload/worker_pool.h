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
// of that worker (a ConnectionPool per worker). A unit whose worker vanished before dispatch
// waits in `pending_` for the next free slot.
//
// Per request: request_timeout (the worker is killed and replaced, the client gets 504) and
// slow_after (logged; on_slow runs) are timed here, from the moment the request is handed to a
// worker connection.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/uv/timer.h"
#include "config/config.h"
#include "offload/abandoned_request.h"
#include "offload/dispatch.h"
#include "offload/supervisor.h"
#include "proxy/routing/fair_pump.h"
#include "proxy/routing/limiter.h"
#include "proxy/routing/route_limiter.h"
#include "proxy/upstream/connection_pool.h"
#include "proxy/upstream/target.h"
#include "proxy/upstream/upstream_connection.h"

namespace loopguard::offload {

class WorkerPool final : public upstream::Target,
                         public routing::CapacityGate,
                         private SupervisorEvents,
                         private AbandonedRequest::Owner {
 public:
  WorkerPool(uv_loop_t* loop, net::BufferPool& buffers, RuntimeDir& dir,
             const config::Pool& config);
  ~WorkerPool() override;
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void start() { supervisor_.start(); }
  void reconfigure(const config::Pool& config);
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
  // Requests it can hold now: concurrency_per_worker x dispatchable workers.
  uint64_t capacity() const { return ledger_.slots(); }
  // Its processes and their restart history, for /status and the per-worker metrics.
  const Supervisor& supervisor() const { return supervisor_; }

  // Target
  const std::string& name() const override { return name_; }
  upstream::AcquireResult acquire(upstream::TargetWaiter& waiter,
                                  const upstream::AcquireOptions& options) override;
  void release(upstream::Lease* lease, bool reusable) override;
  // The pool's own request_timeout ends a request first (504 and a replaced worker); the
  // exchange's response timeout is only a backstop.
  config::Duration responseTimeout() const override;
  bool retryable(const upstream::Lease* lease) const override;
  const char* unavailableReason() const override;
  upstream::WorkerIdentity identifyWorker(const upstream::Lease& lease) const override;

  // CapacityGate
  bool tryTake() override;
  void giveBack() override;
  bool hasCapacity() const override;

 private:
  // The connections of one worker, and the requests dispatched to it that wait for one.
  struct WorkerConnections final : upstream::ConnectionPool::Owner {
    WorkerConnections(WorkerPool& owner, Worker& worker);
    void onConnectFailed(upstream::ConnectionPool&, upstream::TargetWaiter* charged,
                         int status) override;
    void onHandOut(upstream::ConnectionPool&, upstream::TargetWaiter& waiter,
                   upstream::UpstreamConnection& connection) override;
    void onWaitCancelled(upstream::ConnectionPool&, upstream::TargetWaiter& waiter) override;
    void onConnectionClosed(upstream::ConnectionPool&, upstream::UpstreamConnection& connection,
                            bool in_use) override;

    WorkerPool& owner;
    Worker& worker;
    upstream::ConnectionPool pool;
  };
  // A request handed to a worker connection.
  struct Running {
    Worker* worker = nullptr;
    uint64_t started_at = 0;
    bool slow_reported = false;
    bool timed_out = false;
    bool given_up = false;  // by its exchange; the worker is finishing it
    std::unique_ptr<AbandonedRequest> abandoned;  // while it does
    std::string route;
    std::string request_id;
  };

  Worker* pick();
  WorkerConnections& connectionsOf(Worker& worker);
  // The worker is gone and so are its connections: its pool goes (at the end of the loop turn).
  void dropConnectionsIfDone(Worker& worker);
  // Puts `waiter` on `worker`. `sync`: called from acquire(), so an idle connection is returned
  // (Ready) rather than delivered through the waiter.
  upstream::AcquireResult startOn(Worker& worker, upstream::TargetWaiter& waiter, bool sync);
  void dispatchOrWait(upstream::TargetWaiter& waiter);
  void retryElsewhere(upstream::TargetWaiter& waiter, const char* why);
  // A request counted on `worker` left it without being served (cancelled, or moved on).
  void undispatch(Worker& worker);
  void servePending();
  void slotFreed(Worker& worker);
  bool mayStillBeWorking(upstream::UpstreamConnection* connection) const;
  void track(upstream::UpstreamConnection* connection, Worker& worker,
             const upstream::TargetWaiter& waiter);
  void pumpWaiting();
  void failWaiting();
  void closeIdle(Worker& worker);

  // Deadlines.
  void armDeadline(uint64_t at);
  void disarmDeadline();
  void onDeadlineTimer();
  void reportSlow(Running& running, uint64_t now);
  void timeOut(upstream::UpstreamConnection* connection);

  // ConnectionPool::Owner, per worker
  void onConnectFailed(WorkerConnections& wc, upstream::TargetWaiter* charged, int status);
  void onConnectionClosed(WorkerConnections& wc, upstream::UpstreamConnection& connection,
                          bool in_use);
  // SupervisorEvents
  void onWorkerReady(Worker& worker) override;
  void onWorkerStopping(Worker& worker) override;
  void onWorkerExited(Worker& worker) override;
  void onCapacityChanged() override;
  // AbandonedRequest::Owner
  void onAbandonedDone(upstream::UpstreamConnection* connection) override;

  uv_loop_t* loop_;
  net::BufferPool& buffers_;
  std::string name_;
  Supervisor supervisor_;
  SlotLedger ledger_;
  upstream::WaitList pending_;  // holding a unit, no worker to go to yet
  std::unordered_map<const Worker*, std::unique_ptr<WorkerConnections>> connections_;
  std::unordered_map<upstream::UpstreamConnection*, Running> running_;
  std::vector<std::weak_ptr<routing::RouteLimiter>> limiters_;
  uv::Timer deadline_timer_;
  std::optional<uint64_t> armed_;
  routing::FairPump pump_;  // freed units go to the route with the oldest waiter
  bool available_ = true;
};

}  // namespace loopguard::offload
