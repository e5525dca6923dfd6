#include "offload/worker_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/uv/loop.h"

namespace loopguard::offload {

using upstream::AcquireResult;
using upstream::UpstreamConnection;
using upstream::UpstreamErrorKind;

namespace {

// Idle keep-alive connections to a worker are dropped after 1 s: well below the keep-alive
// timeout of common app servers (uvicorn 5 s, gunicorn 2 s, Node 5 s), so loopguard never
// writes a request to a connection the worker is closing.
constexpr uint64_t kIdleTimeoutMs = 1'000;
constexpr uint64_t kConnectTimeoutMs = 2'000;
// A request whose connects keep failing (its workers keep dying under it) fails with 502.
constexpr uint32_t kMaxConnectAttempts = 3;
// The exchange's response-head timeout is a backstop behind the pool's own request_timeout.
constexpr int64_t kResponseBackstopMs = 1'000;

std::shared_ptr<spdlog::logger> log() { return spdlog::get("offload"); }

// Whether the worker has sent the whole response of the request on `c`.
bool responseComplete(UpstreamConnection* c) {
  return c->state() == UpstreamConnection::State::Active && c->hasParser() &&
         c->parser().headComplete() && !c->parser().inMessage();
}

}  // namespace

WorkerPool::WorkerPool(uv_loop_t* loop, net::BufferPool& buffers, RuntimeDir& dir,
                       const config::Pool& config)
    : loop_(loop),
      buffers_(buffers),
      name_(config.name),
      supervisor_(loop, buffers, dir, *this, config),
      deadline_timer_(loop, this, &uv::bindMethod<WorkerPool, &WorkerPool::onDeadlineTimer>) {}

WorkerPool::~WorkerPool() = default;

void WorkerPool::stop(std::function<void()> done) {
  supervisor_.stop(std::move(done));
  // Nobody waits for the result of an abandoned request: it must not hold up the stop.
  std::vector<UpstreamConnection*> abandoned;
  for (const auto& [c, run] : running_) {
    if (run.abandoned != nullptr) abandoned.push_back(c);
  }
  for (UpstreamConnection* c : abandoned) {
    if (running_.count(c) != 0) c->fail(UpstreamErrorKind::Reset, "shutting down");
  }
}

void WorkerPool::addWaitingLimiter(const std::shared_ptr<routing::RouteLimiter>& limiter) {
  for (const auto& weak : limiters_) {
    if (weak.lock() == limiter) return;
  }
  // Drop the limiters of routes that are gone while we are at it.
  limiters_.erase(std::remove_if(limiters_.begin(), limiters_.end(),
                                 [](const auto& weak) { return weak.expired(); }),
                  limiters_.end());
  limiters_.push_back(limiter);
}

config::Duration WorkerPool::responseTimeout() const {
  return config().request_timeout + config::Duration(kResponseBackstopMs);
}

const char* WorkerPool::unavailableReason() const {
  return supervisor_.available() ? nullptr : "no_workers";
}

upstream::WorkerIdentity WorkerPool::identifyWorker(const upstream::Lease& lease) const {
  auto it = running_.find(const_cast<UpstreamConnection*>(&UpstreamConnection::of(lease)));
  if (it == running_.end()) return {};
  const Worker& w = *it->second.worker;
  return {true, w.index(), w.pid()};
}

bool WorkerPool::retryable(const upstream::Lease* lease) const {
  // Retry only when the worker is alive: a request that was on a worker when it died may be
  // what killed it. The exit may not be reported yet when the connection's EOF arrives, so
  // the process is asked directly.
  auto it = running_.find(const_cast<UpstreamConnection*>(&UpstreamConnection::of(*lease)));
  if (it == running_.end()) return false;
  const Worker& w = *it->second.worker;
  return w.dispatchable() && !w.processGone();
}

void WorkerPool::reconfigure(const config::Pool& config) {
  supervisor_.reconfigure(config);
  for (auto& [worker, wc] : connections_) wc->pool.setMaxIdle(config.concurrency_per_worker);
}

// ---------------------------------------------------------------------------------------------
// Admission (CapacityGate)

bool WorkerPool::tryTake() {
  if (!supervisor_.available() || !pump_.mayTake()) return false;
  if (!ledger_.tryTake()) return false;
  pump_.took();
  return true;
}

void WorkerPool::giveBack() {
  if (!ledger_.giveBack()) {
    log()->error("pool {}: a capacity unit was given back twice", name_);
    return;
  }
  pumpWaiting();
}

bool WorkerPool::hasCapacity() const { return supervisor_.available() && ledger_.hasRoom(); }

void WorkerPool::pumpWaiting() {
  // One admission per turn, so the next unit goes to whichever route then has the oldest
  // waiter: one queue per route, served oldest first across routes.
  pump_.run(limiters_, [this] { return hasCapacity(); });
}

void WorkerPool::failWaiting() {
  // Nobody will serve these soon: 503 no_workers now rather than at the queue timeout.
  while (upstream::TargetWaiter* waiter = pending_.popFront()) {
    waiter->deliverFailure(loop_, UpstreamErrorKind::Connect, "no worker is available");
  }
  for (const auto& weak : limiters_) {
    if (auto limiter = weak.lock()) limiter->limiter().failAllQueued();
  }
}

// ---------------------------------------------------------------------------------------------
// Dispatch (Target)

Worker* WorkerPool::pick() {
  const auto& workers = supervisor_.workers();
  auto it = pickLeastBusy(workers.begin(), workers.end(), config().concurrency_per_worker,
                          [](const std::unique_ptr<Worker>& w) {
                            return DispatchView{w->dispatchable(), w->in_flight, w->served};
                          });
  return it == workers.end() ? nullptr : it->get();
}

AcquireResult WorkerPool::acquire(upstream::TargetWaiter& waiter,
                                  const upstream::AcquireOptions& options) {
  if (supervisor_.stopping()) return AcquireResult::failed("worker pool is stopping");
  waiter.options = options;
  waiter.tries = 0;
  Worker* w = pick();
  if (w == nullptr) {
    pending_.pushBack(waiter);
    return AcquireResult::pending();
  }
  return startOn(*w, waiter, true);
}

AcquireResult WorkerPool::startOn(Worker& w, upstream::TargetWaiter& waiter, bool sync) {
  ++w.in_flight;
  ++w.served;
  WorkerConnections& wc = connectionsOf(w);
  if (sync && !waiter.options.fresh) {
    if (UpstreamConnection* c = wc.pool.takeIdle()) {
      track(c, w, waiter);
      supervisor_.onDispatched(w);
      return AcquireResult::ready(c);
    }
  }
  wc.pool.request(waiter);
  supervisor_.onDispatched(w);
  return AcquireResult::pending();
}

void WorkerPool::dispatchOrWait(upstream::TargetWaiter& waiter) {
  if (Worker* w = pick()) {
    startOn(*w, waiter, false);
  } else {
    pending_.pushBack(waiter);
  }
}

void WorkerPool::retryElsewhere(upstream::TargetWaiter& waiter, const char* why) {
  // Nothing reached a worker, so another worker may take it whatever the method.
  if (++waiter.tries >= kMaxConnectAttempts) {
    waiter.deliverFailure(loop_, UpstreamErrorKind::Connect, why);
    return;
  }
  dispatchOrWait(waiter);
}

void WorkerPool::undispatch(Worker& w) {
  --w.in_flight;
  --w.served;
}

void WorkerPool::servePending() {
  while (!pending_.empty()) {
    Worker* w = pick();
    if (w == nullptr) return;
    startOn(*w, *pending_.popFront(), false);
  }
}

void WorkerPool::track(UpstreamConnection* c, Worker& w, const upstream::TargetWaiter& waiter) {
  uint64_t now = uv_now(loop_);
  Running& run = running_[c];
  run.worker = &w;
  run.started_at = now;
  run.route.assign(waiter.options.route);
  run.request_id.assign(waiter.options.request_id);
  const config::Pool& cfg = config();
  uint64_t first = now + static_cast<uint64_t>(cfg.request_timeout.count());
  if (cfg.slow_after.count() > 0) {
    first = std::min(first, now + static_cast<uint64_t>(cfg.slow_after.count()));
  }
  armDeadline(first);
}

void WorkerPool::release(upstream::Lease* lease, bool reusable) {
  UpstreamConnection* c = &UpstreamConnection::of(*lease);
  auto it = running_.find(c);
  if (it == running_.end()) {  // never handed out through this pool: nothing to account for
    upstream::ConnectionPool::of(*c).release(c, false);
    return;
  }
  Worker& w = *it->second.worker;
  if (!reusable && mayStillBeWorking(c)) {
    // The exchange gave up, the worker did not: its slot stays taken until it is done.
    Running& run = it->second;
    run.given_up = true;
    log()->debug("pool {}: request {} abandoned by its exchange; worker {} (pid {}) finishes it",
                 name_, run.request_id, w.index(), w.pid());
    AbandonedRequest::Owner& owner = *this;
    run.abandoned = std::make_unique<AbandonedRequest>(c, owner);
    return;
  }
  running_.erase(it);
  --w.in_flight;
  if (running_.empty()) disarmDeadline();
  // The worker closed the connection before its response was whole: it may be dying (its
  // sockets close a moment before its exit is reported). Send it nothing until that is clear.
  if (!reusable && c->peerClosed() && w.dispatchable() && !responseComplete(c)) {
    supervisor_.onWorkerTrouble(w, false, "closed a connection mid-request");
  }
  // Never reused after anything but a complete exchange on a healthy worker.
  bool reuse = reusable && w.dispatchable() && c->state() == UpstreamConnection::State::Active;
  upstream::ConnectionPool::of(*c).release(c, reuse);
  slotFreed(w);
}

void WorkerPool::onAbandonedDone(UpstreamConnection* c) {
  auto it = running_.find(c);
  if (it == running_.end()) return;  // its connection closed first (onConnectionClosed)
  // Called from inside the abandoned request: it goes at the end of the loop turn.
  uv::Loop::of(loop_).deferDelete(std::move(it->second.abandoned));
  release(c, false);
}

bool WorkerPool::mayStillBeWorking(UpstreamConnection* c) const {
  auto it = running_.find(c);
  if (it == running_.end() || it->second.given_up || it->second.timed_out) return false;
  const Worker& w = *it->second.worker;
  // The whole request reached a live worker, which has not answered or closed yet.
  return c->state() == UpstreamConnection::State::Active && c->requestSent() &&
         !c->peerClosed() && c->hasParser() && !c->parser().inMessage() &&
         !c->parser().headComplete() && c->socket().input().empty() &&
         (w.state() == Worker::State::Ready || w.state() == Worker::State::Stopping) &&
         !w.processGone();
}

void WorkerPool::slotFreed(Worker& w) {
  supervisor_.onRequestDone(w);
  servePending();
}

// ---------------------------------------------------------------------------------------------
// Connections: a ConnectionPool per worker

WorkerPool::WorkerConnections::WorkerConnections(WorkerPool& o, Worker& w)
    : owner(o),
      worker(w),
      pool(o.loop_, o.buffers_, *this,
           [&w] {
             upstream::Destination d;
             d.name = w.name();
             d.is_unix = w.address().is_unix;
             if (d.is_unix) {
               d.unix_path = w.address().path;
             } else {
               uv_ip4_addr("127.0.0.1", w.address().port,
                           reinterpret_cast<sockaddr_in*>(&d.addr));
             }
             return d;
           }(),
           [&o, &w] {
             upstream::PoolSettings s;
             s.max_idle = o.config().concurrency_per_worker;
             s.idle_timeout_ms = kIdleTimeoutMs;
             s.connect_timeout_ms = kConnectTimeoutMs;
             s.open_gauge = &w.open_connections;
             return s;
           }()) {}

void WorkerPool::WorkerConnections::onConnectFailed(upstream::ConnectionPool&,
                                                    upstream::TargetWaiter* charged, int status) {
  owner.onConnectFailed(*this, charged, status);
}

void WorkerPool::WorkerConnections::onHandOut(upstream::ConnectionPool&,
                                              upstream::TargetWaiter& waiter,
                                              UpstreamConnection& connection) {
  owner.track(&connection, worker, waiter);
}

void WorkerPool::WorkerConnections::onWaitCancelled(upstream::ConnectionPool&,
                                                    upstream::TargetWaiter&) {
  // Its request went away before it reached the worker: the slot is free again. A connect made
  // for it serves the next request, or goes idle.
  owner.undispatch(worker);
  owner.slotFreed(worker);
}

void WorkerPool::WorkerConnections::onConnectionClosed(upstream::ConnectionPool&,
                                                       UpstreamConnection& connection,
                                                       bool in_use) {
  owner.onConnectionClosed(*this, connection, in_use);
}

WorkerPool::WorkerConnections& WorkerPool::connectionsOf(Worker& w) {
  auto& wc = connections_[&w];
  if (!wc) wc = std::make_unique<WorkerConnections>(*this, w);
  return *wc;
}

void WorkerPool::dropConnectionsIfDone(Worker& w) {
  auto it = connections_.find(&w);
  if (it == connections_.end() || it->second->pool.open() > 0) return;
  // May be called from inside that pool: it goes at the end of the loop turn.
  uv::Loop::of(loop_).deferDelete(std::move(it->second));
  connections_.erase(it);
}

void WorkerPool::onConnectFailed(WorkerConnections& wc, upstream::TargetWaiter* charged,
                                 int status) {
  Worker& w = wc.worker;
  if (status != UV_ECANCELED) {  // not closed by us (a worker that is gone)
    supervisor_.onWorkerTrouble(w, true,
                                status == UV_ETIMEDOUT ? "connect timed out" : uv_strerror(status));
  }
  if (charged != nullptr) {
    undispatch(w);
    retryElsewhere(*charged, "cannot connect to a worker");
    slotFreed(w);
  }
}

void WorkerPool::onConnectionClosed(WorkerConnections& wc, UpstreamConnection& c, bool in_use) {
  Worker& w = wc.worker;
  if (auto it = running_.find(&c); in_use && it != running_.end()) {
    // Closed without a release (should not happen); keep the counts true anyway.
    // Its abandoned request, if any, may be what is running: it goes at the end of the turn.
    uv::Loop::of(loop_).deferDelete(std::move(it->second.abandoned));
    running_.erase(it);
    --w.in_flight;
    if (running_.empty()) disarmDeadline();
    supervisor_.onRequestDone(w);
  }
  if (w.state() == Worker::State::Exited && wc.pool.open() == 0) {
    dropConnectionsIfDone(w);
    supervisor_.sweepSoon();
  }
}

void WorkerPool::closeIdle(Worker& w) {
  auto it = connections_.find(&w);
  if (it != connections_.end()) it->second->pool.closeIdle();
}

// ---------------------------------------------------------------------------------------------
// Worker lifecycle (SupervisorEvents)

void WorkerPool::onWorkerReady(Worker&) {}  // onCapacityChanged() follows

void WorkerPool::onWorkerStopping(Worker& w) { closeIdle(w); }

void WorkerPool::onWorkerExited(Worker& w) {
  // Requests that had not reached it yet go to another worker; its other connections close.
  if (auto it = connections_.find(&w); it != connections_.end()) {
    upstream::WaitList displaced;
    it->second->pool.evict(displaced);
    while (upstream::TargetWaiter* waiter = displaced.popFront()) {
      undispatch(w);
      retryElsewhere(*waiter, "cannot connect to a worker");
      supervisor_.onRequestDone(w);
    }
  }
  std::vector<UpstreamConnection*> doomed;
  for (const auto& [c, run] : running_) {
    if (run.worker == &w) doomed.push_back(c);
  }
  // Each fail() may re-enter the pool (the exchange releases, the next request is dispatched):
  // re-check that the connection is still ours before touching it.
  for (UpstreamConnection* c : doomed) {
    if (running_.count(c) != 0) {
      c->fail(UpstreamErrorKind::Reset, "the worker died while handling the request");
    }
  }
  dropConnectionsIfDone(w);
}

void WorkerPool::onCapacityChanged() {
  ledger_.setSlots(static_cast<uint64_t>(supervisor_.readyWorkers()) *
                   config().concurrency_per_worker);
  bool available = supervisor_.available();
  bool lost = available_ && !available;
  available_ = available;
  if (lost) {
    if (!supervisor_.stopping()) {
      log()->error("pool {}: no worker can start: refusing its requests with 503 (no_workers) "
                   "until one is ready",
                   name_);
    }
    failWaiting();
    return;
  }
  servePending();
  pumpWaiting();
}

// ---------------------------------------------------------------------------------------------
// Deadlines: request_timeout and slow_after

void WorkerPool::armDeadline(uint64_t at) {
  if (armed_ && *armed_ <= at) return;
  armed_ = at;
  uint64_t now = uv_now(loop_);
  deadline_timer_.start(at > now ? at - now : 0);
}

void WorkerPool::disarmDeadline() {
  // An armed timer would keep the loop (and so the process) alive with nothing to time.
  armed_.reset();
  deadline_timer_.stop();
}

void WorkerPool::onDeadlineTimer() {
  armed_.reset();
  const config::Pool& cfg = config();
  const uint64_t timeout = static_cast<uint64_t>(cfg.request_timeout.count());
  const uint64_t slow = static_cast<uint64_t>(cfg.slow_after.count());
  uint64_t now = uv_now(loop_);
  std::vector<UpstreamConnection*> expired;
  for (auto& [c, run] : running_) {
    if (slow > 0 && !run.slow_reported && now >= run.started_at + slow) reportSlow(run, now);
    if (!run.timed_out && now >= run.started_at + timeout) expired.push_back(c);
  }
  for (UpstreamConnection* c : expired) timeOut(c);
  // Re-arm for the earliest deadline left (timeOut() may have changed the set).
  std::optional<uint64_t> next;
  for (const auto& [c, run] : running_) {
    if (!run.timed_out) {
      uint64_t at = run.started_at + timeout;
      next = next ? std::min(*next, at) : at;
    }
    if (slow > 0 && !run.slow_reported) {
      uint64_t at = run.started_at + slow;
      next = next ? std::min(*next, at) : at;
    }
  }
  if (next) armDeadline(*next);
}

void WorkerPool::reportSlow(Running& run, uint64_t now) {
  run.slow_reported = true;
  Worker& w = *run.worker;
  log()->warn("pool {}: slow request {} on route {}: worker {} (pid {}) busy for {} ms "
              "(slow_after {} ms)",
              name_, run.request_id, run.route, w.index(), w.pid(), now - run.started_at,
              config().slow_after.count());
  supervisor_.runDiagnostic(w);
}

void WorkerPool::timeOut(UpstreamConnection* c) {
  auto it = running_.find(c);
  if (it == running_.end()) return;
  Running& run = it->second;
  run.timed_out = true;
  if (c->state() == UpstreamConnection::State::Tunnel) return;  // an upgraded stream: no limit
  // The worker sent its whole response; only the client is slow to read it.
  if (responseComplete(c)) return;
  Worker& w = *run.worker;
  uint64_t now = uv_now(loop_);
  // A diagnostic that never ran for this request (slow_after off or not below the timeout)
  // still runs before the kill.
  if (config().slow_after.count() > 0 && !run.slow_reported) reportSlow(run, now);
  log()->warn("pool {}: request {} on route {} exceeded request_timeout ({} ms) on worker {} "
              "(pid {}): killing the worker",
              name_, run.request_id, run.route, config().request_timeout.count(), w.index(),
              w.pid());
  supervisor_.onRequestTimeout(w);
  c->fail(UpstreamErrorKind::Timeout, "the worker exceeded request_timeout");
}

}  // namespace loopguard::offload
