#include "offload/supervisor.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>

#include "proxy/metrics/process_stats.h"

extern char** environ;

namespace loopguard::offload {

namespace {

// SIGTERM -> SIGKILL grace for a worker that is stopped while healthy (recycle, shutdown):
// long enough for an app's own graceful shutdown with nothing in flight.
constexpr uint64_t kStopGraceMs = 5'000;
// ... and for one that is killed because it misbehaves (hung request, never ready).
constexpr uint64_t kKillGraceMs = 2'000;
// How long a request_timeout kill waits for a running on_slow diagnostic (a stack dump needs
// the process alive).
constexpr uint64_t kDiagnosticWaitMs = 5'000;
// An on_slow command running longer than this is killed.
constexpr uint64_t kDiagnosticLimitMs = 30'000;
constexpr uint64_t kRssCheckMs = 1'000;
// A worker that dropped a request or refused a connection gets this long to be reported dead
// (the exit report lags its sockets' closing by a few milliseconds) before it is trusted again.
constexpr uint64_t kSuspectGraceMs = 250;
constexpr uint64_t kSuspectCheckMs = 20;

std::shared_ptr<spdlog::logger> log() { return spdlog::get("offload"); }

}  // namespace

struct Supervisor::Slot {
  Supervisor* owner = nullptr;
  uint32_t index = 0;
  Worker* serving = nullptr;  // Ready: takes the slot's requests
  Worker* booting = nullptr;  // Starting: the first process, a restart, or a replacement
  RestartBackoff backoff;
  uint32_t boot_failures = 0;  // consecutive processes that died before they were ready
  uv::Timer restart_timer;
  bool restart_pending = false;
  // Why its processes were replaced, for /status.
  std::array<uint64_t, kRestartReasonCount> restarts{};
  std::string last_restart;
  uint64_t last_restart_at = 0;

  Slot(Supervisor* s, uv_loop_t* loop, uint32_t i, const config::Backoff& limits)
      : owner(s),
        index(i),
        backoff(limits),
        restart_timer(loop, this, [](void* self) {
          auto* slot = static_cast<Slot*>(self);
          slot->owner->onRestartTimer(*slot);
        }) {}
};

// An on_slow command looking at one worker.
struct Supervisor::Diagnostic final : private ChildEvents {
  Supervisor* owner;
  Worker* worker;  // kept alive while this runs (diagnostic_running)
  ChildProcess process;
  uv::Timer limit_timer;

  Diagnostic(Supervisor* s, uv_loop_t* loop, Worker* w)
      : owner(s),
        worker(w),
        process(loop, *this, w->name() + " on_slow", ChildProcess::Output::Diagnostic),
        limit_timer(loop, this, [](void* self) {
          static_cast<Diagnostic*>(self)->process.signalGroup(SIGKILL);
        }) {}
  void onChildExited(const ExitStatus& status) override {
    limit_timer.stop();
    log()->info("[{}] finished: {}", process.tag(), describeExit(status));
    owner->onDiagnosticExited(*this);
  }
};

Supervisor::Supervisor(uv_loop_t* loop, net::BufferPool& buffers, RuntimeDir& dir,
                       SupervisorEvents& events, const config::Pool& config)
    : loop_(loop),
      buffers_(buffers),
      dir_(dir),
      events_(events),
      config_(config),
      rss_timer_(loop, this, &uv::bindTimer<Supervisor, &Supervisor::checkRss>),
      suspect_timer_(loop, this, &uv::bindTimer<Supervisor, &Supervisor::checkSuspects>),
      rng_(std::random_device{}()) {}

Supervisor::~Supervisor() {
  for (const auto& w : workers_) {
    assert(w->state() == Worker::State::Exited && "pool destroyed with a worker running");
    (void)w;
  }
}

void Supervisor::start() {
  if (started_) return;
  started_ = true;
  resizeSlots();
  if (config_.max_rss > 0) rss_timer_.start(kRssCheckMs, kRssCheckMs);
  updateAvailability();
}

void Supervisor::resizeSlots() {
  while (slots_.size() < config_.workers) {
    auto slot = std::make_unique<Slot>(this, loop_, static_cast<uint32_t>(slots_.size()),
                                       config_.restart_backoff);
    Slot* s = slot.get();
    slots_.push_back(std::move(slot));
    spawnInto(*s);
  }
  while (slots_.size() > config_.workers) {
    Slot& s = *slots_.back();
    if (s.serving != nullptr) retire(*s.serving, "pool shrunk");
    if (s.booting != nullptr) retire(*s.booting, "pool shrunk");
    slots_.pop_back();  // its timer closes with it
  }
}

Supervisor::Slot* Supervisor::slotOf(const Worker& w) {
  if (w.index() >= slots_.size()) return nullptr;
  Slot* s = slots_[w.index()].get();
  return s->serving == &w || s->booting == &w ? s : nullptr;
}

void Supervisor::spawnInto(Slot& s) {
  if (stopping_ || s.booting != nullptr) return;
  uint64_t generation = ++next_generation_;
  WorkerAddress address;
  std::string error;
  if (config_.listensOnPort()) {
    address.is_unix = false;
    address.port = RuntimeDir::freeLoopbackPort();
    if (address.port == 0) error = "no free loopback port";
  } else {
    address.path = dir_.socketPath(config_.name, s.index, generation);
    ::unlink(address.path.c_str());  // never a stale socket from an earlier process
  }
  WorkerHost& host = *this;  // a private base: convert here, not inside make_unique
  auto worker = std::make_unique<Worker>(loop_, buffers_, probes_, host, config_.name, s.index,
                                         generation, address);
  Worker* w = worker.get();
  w->recycle_after = recycleThreshold(config_.max_requests, rng_());
  w->config_generation = config_generation_;
  workers_.push_back(std::move(worker));
  if (error.empty() && w->start(config_, error)) {
    s.booting = w;
    log()->info("pool {}: worker {} starting (pid {}) on {}", config_.name, s.index, w->pid(),
                address.describe());
    return;
  }
  log()->error("pool {}: worker {} failed to start: {}", config_.name, s.index, error);
  count(RestartReason::Crash, s.index, "failed to start: " + error);
  sweepSoon();
  bootFailed(s);
}

void Supervisor::bootFailed(Slot& s) {
  ++s.boot_failures;
  scheduleRestart(s);
  updateAvailability();
}

void Supervisor::scheduleRestart(Slot& s) {
  if (stopping_ || s.restart_pending || s.booting != nullptr) return;
  uint64_t delay = s.backoff.next();
  s.restart_pending = true;
  s.restart_timer.start(delay);
  log()->info("pool {}: restarting worker {} in {} ms", config_.name, s.index, delay);
}

void Supervisor::onRestartTimer(Slot& s) {
  s.restart_pending = false;
  spawnInto(s);
}

void Supervisor::onWorkerReady(Worker& w) {
  Slot* s = slotOf(w);
  if (s == nullptr || s->booting != &w || stopping_) {
    retire(w, stopping_ ? "shutdown" : "not needed any more");
    return;
  }
  s->booting = nullptr;
  s->boot_failures = 0;
  log()->info("pool {}: worker {} (pid {}) ready in {} ms", config_.name, w.index(), w.pid(),
              w.readyAt() - w.startedAt());
  Worker* old = std::exchange(s->serving, &w);
  if (old != nullptr) {
    // A recycle (or a reload): the replacement is ready, so the old one stops taking requests
    // now and is signalled once the ones it has are done.
    retire(*old, old->retiring == RestartReason::MaxRss ? "recycled: max_rss"
                 : old->retiring == RestartReason::MaxRequests ? "recycled: max_requests"
                                                               : "replaced: config changed");
  }
  events_.onWorkerReady(w);
  updateAvailability();
  events_.onCapacityChanged();
}

void Supervisor::onWorkerNotReady(Worker& w, const std::string& last_probe) {
  log()->warn("pool {}: worker {} (pid {}) not ready within {} ms (last probe: {}): restarting it",
              config_.name, w.index(), w.pid(), config_.ready.timeout.count(), last_probe);
  count(RestartReason::NotReady, w.index(),
        "not ready within " + std::to_string(config_.ready.timeout.count()) + " ms");
  Slot* s = slotOf(w);
  if (s != nullptr) s->booting = nullptr;
  w.beginStopping("not ready in time");
  w.terminate(kKillGraceMs);
  if (s != nullptr) bootFailed(*s);
}

void Supervisor::onWorkerExited(Worker& w, const ExitStatus& status) {
  if (w.address().is_unix) ::unlink(w.address().path.c_str());
  events_.onWorkerExited(w);
  Slot* s = slotOf(w);
  if (w.stopReason() != nullptr) {
    log()->info("pool {}: worker {} (pid {}) stopped ({}) after {} requests: {}", config_.name,
                w.index(), w.pid(), w.stopReason(), w.served, describeExit(status));
  } else if (!w.everReady()) {
    // Its output in the message, unless the log has just shown it line by line.
    std::string output = w.lastOutput();
    std::string said = !output.empty()         ? "; last output: " + output
                       : w.wroteAnything() ? "; its output is in the lines above"
                                           : "";
    log()->error("pool {}: worker {} failed to start: {}{}", config_.name, w.index(),
                 describeExit(status), said);
    count(classifyExit(status), w.index(), "failed to start: " + describeExit(status));
    if (s != nullptr) {
      s->booting = nullptr;
      bootFailed(*s);
    }
  } else {
    RestartReason reason = classifyExit(status);
    log()->error("pool {}: worker {} (pid {}) {}: {}", config_.name, w.index(), w.pid(),
                 reason == RestartReason::Crash ? "crashed" : "exited", describeExit(status));
    count(reason, w.index(), describeExit(status));
    if (s != nullptr && s->serving == &w) {
      s->serving = nullptr;
      // A worker that had been up for a while starts its slot's backoff afresh.
      if (uv_now(loop_) - w.readyAt() >= kStableAfterMs) s->backoff.reset();
      scheduleRestart(*s);
    }
  }
  sweepSoon();
  updateAvailability();
  events_.onCapacityChanged();
  maybeFinishStop();
}

void Supervisor::retire(Worker& w, const char* why) {
  if (w.state() == Worker::State::Exited || w.state() == Worker::State::Stopping) return;
  bool was_ready = w.state() == Worker::State::Ready;
  w.beginStopping(why);
  if (was_ready) events_.onWorkerStopping(w);
  if (w.in_flight == 0) w.terminate(was_ready ? kStopGraceMs : kKillGraceMs);
}

void Supervisor::onDispatched(Worker& w) {
  if (config_.max_requests > 0 && w.recycle_after > 0 && w.served >= w.recycle_after &&
      !w.retiring && w.state() == Worker::State::Ready) {
    log()->info("pool {}: worker {} (pid {}) served {} requests (max_requests {}): recycling it",
                config_.name, w.index(), w.pid(), w.served, config_.max_requests);
    beginRecycle(w, RestartReason::MaxRequests);
  }
}

void Supervisor::beginRecycle(Worker& w, RestartReason reason) {
  w.retiring = reason;
  count(reason, w.index(), "recycled, its replacement started first");
  Slot* s = slotOf(w);
  // The worker keeps serving until its replacement is ready: capacity never drops. If the
  // replacement fails to start, its slot retries with backoff and this one serves on.
  if (s != nullptr && s->serving == &w && s->booting == nullptr && !s->restart_pending) {
    spawnInto(*s);
  }
}

void Supervisor::onRequestDone(Worker& w) {
  if (w.state() == Worker::State::Stopping && w.in_flight == 0 && !w.terminated() &&
      !w.diagnostic_running) {
    w.terminate(kStopGraceMs);
  }
}

void Supervisor::onRequestTimeout(Worker& w) {
  if (w.state() == Worker::State::Exited) return;
  bool was_ready = w.state() == Worker::State::Ready;
  if (w.state() != Worker::State::Stopping) {
    count(RestartReason::Timeout, w.index(), "killed: a request ran past request_timeout");
  }
  Slot* s = slotOf(w);
  if (s != nullptr && s->serving == &w) s->serving = nullptr;
  w.beginStopping("request_timeout", true);
  if (was_ready) events_.onWorkerStopping(w);
  if (w.diagnostic_running) {
    w.terminateAfter(kDiagnosticWaitMs, kKillGraceMs);  // the diagnostic looks first
  } else {
    w.terminate(kKillGraceMs);
  }
  // A hung request says nothing about the app's ability to start: replace it at once.
  if (s != nullptr && s->booting == nullptr) {
    if (s->restart_pending) {
      s->restart_timer.stop();
      s->restart_pending = false;
    }
    spawnInto(*s);
  }
  updateAvailability();
  events_.onCapacityChanged();
}

void Supervisor::onWorkerTrouble(Worker& w, bool refused, const std::string& why) {
  if (!w.dispatchable()) return;
  if (refused && w.refusedBefore && !w.processGone()) {
    log()->warn("pool {}: worker {} (pid {}) refuses connections ({}): replacing it",
                config_.name, w.index(), w.pid(), why);
    count(RestartReason::Crash, w.index(), "killed: refuses connections (" + why + ")");
    Slot* s = slotOf(w);
    if (s != nullptr && s->serving == &w) s->serving = nullptr;
    w.beginStopping("refuses connections");
    events_.onWorkerStopping(w);
    w.terminate(kKillGraceMs);
    if (s != nullptr) scheduleRestart(*s);
  } else {
    w.refusedBefore |= refused;
    w.suspect(uv_now(loop_));
    if (!suspect_timer_.active()) suspect_timer_.start(kSuspectCheckMs, kSuspectCheckMs);
  }
  updateAvailability();
  events_.onCapacityChanged();
}

void Supervisor::checkSuspects() {
  bool changed = false;
  bool waiting = false;
  uint64_t now = uv_now(loop_);
  for (const auto& w : workers_) {
    if (w->state() != Worker::State::Ready || !w->suspected()) continue;
    if (w->processGone() || now - w->suspectSince() < kSuspectGraceMs) {
      waiting = true;  // dead: its exit report follows; or not decided yet
      continue;
    }
    log()->info("pool {}: worker {} (pid {}) is alive after a failed connection: back in rotation",
                config_.name, w->index(), w->pid());
    w->clearSuspect();
    changed = true;
  }
  if (!waiting) suspect_timer_.stop();
  if (changed) {
    updateAvailability();
    events_.onCapacityChanged();
  }
}

void Supervisor::runDiagnostic(Worker& w) {
  if (config_.on_slow.empty() || w.diagnostic_running || w.state() == Worker::State::Exited ||
      stopping_) {
    return;
  }
  Substitutions subs;
  subs.pid = std::to_string(w.pid());
  subs.index = std::to_string(w.index());
  SpawnSpec spec;
  for (const std::string& arg : config_.on_slow) spec.command.push_back(substitute(arg, subs));
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) spec.env.emplace_back(*e);
  spec.workdir = config_.workdir;
  auto d = std::make_unique<Diagnostic>(this, loop_, &w);
  std::string error;
  if (d->process.spawn(spec, error) != 0) {
    log()->warn("pool {}: on_slow for worker {} (pid {}) could not start: {}", config_.name,
                w.index(), w.pid(), error);
    return;
  }
  log()->info("pool {}: running on_slow for worker {} (pid {}): pid {}", config_.name, w.index(),
              w.pid(), d->process.pid());
  w.diagnostic_running = true;
  d->limit_timer.start(kDiagnosticLimitMs);
  diagnostics_.push_back(std::move(d));
}

void Supervisor::onDiagnosticExited(Diagnostic& d) {
  Worker* w = std::exchange(d.worker, nullptr);
  if (w != nullptr) {
    w->diagnostic_running = false;
    // A worker waiting for the diagnostic before its kill goes now; one that finished its
    // requests meanwhile while stopping is signalled as usual.
    if (w->state() == Worker::State::Stopping && !w->terminated() &&
        (w->stopReason() == std::string_view("request_timeout") || w->in_flight == 0)) {
      w->terminate(kKillGraceMs);
    }
  }
  sweepSoon();
  maybeFinishStop();
}

void Supervisor::checkRss() {
  if (config_.max_rss == 0 || stopping_) return;
  for (const auto& w : workers_) {
    if (w->state() != Worker::State::Ready || w->retiring) continue;
    uint64_t rss = metrics::residentBytes(w->pid());
    if (rss > config_.max_rss) {
      log()->info("pool {}: worker {} (pid {}) uses {} KiB (max_rss {} KiB): recycling it",
                  config_.name, w->index(), w->pid(), rss / 1024, config_.max_rss / 1024);
      beginRecycle(*w, RestartReason::MaxRss);
    }
  }
}

void Supervisor::reconfigure(const config::Pool& config) {
  if (config == config_) return;
  if (!started_ || stopping_) {
    config_ = config;  // start() uses it; a stopping pool starts nothing any more
    return;
  }
  bool restart_workers = config.command != config_.command || config.env != config_.env ||
                         config.workdir != config_.workdir;
  config_ = config;
  for (auto& s : slots_) s->backoff.setLimits(config_.restart_backoff);
  if (config_.max_rss > 0 && !stopping_) {
    rss_timer_.start(kRssCheckMs, kRssCheckMs);
  } else {
    rss_timer_.stop();
  }
  if (restart_workers) {
    ++config_generation_;
    for (auto& s : slots_) {
      if (s->booting != nullptr) {
        Worker* old = std::exchange(s->booting, nullptr);
        retire(*old, "replaced: config changed");
      }
      if (s->serving != nullptr) {
        s->serving->retiring = RestartReason::Exit;  // not counted: a reload is no failure
      }
      if (s->restart_pending) {
        s->restart_timer.stop();
        s->restart_pending = false;
      }
      spawnInto(*s);
    }
  }
  resizeSlots();
  updateAvailability();
  events_.onCapacityChanged();
}

void Supervisor::enterStopping() {
  stopping_ = true;
  rss_timer_.stop();
  suspect_timer_.stop();
  for (auto& s : slots_) {
    s->restart_timer.stop();
    s->restart_pending = false;
    s->serving = nullptr;
    s->booting = nullptr;
  }
}

void Supervisor::stop(std::function<void()> done) {
  stop_done_ = std::move(done);
  if (!stopping_) {
    enterStopping();
    for (const auto& w : workers_) retire(*w, "shutdown");
    for (const auto& d : diagnostics_) d->process.signalGroup(SIGKILL);
    updateAvailability();
    events_.onCapacityChanged();
  }
  maybeFinishStop();
}

void Supervisor::kill() {
  enterStopping();
  for (const auto& w : workers_) {
    if (w->state() == Worker::State::Ready) events_.onWorkerStopping(*w);
    w->killNow();
  }
  for (const auto& d : diagnostics_) d->process.signalGroup(SIGKILL);
  updateAvailability();
}

void Supervisor::maybeFinishStop() {
  if (!stopping_ || !stop_done_) return;
  for (const auto& w : workers_) {
    if (w->state() != Worker::State::Exited) return;
  }
  for (const auto& d : diagnostics_) {
    if (d->process.state() != ChildProcess::State::Exited) return;
  }
  sweepSoon();  // runs the callback from a later step
}

void Supervisor::sweepSoon() { sweep_.post(loop_); }

void Supervisor::sweep() {
  diagnostics_.erase(std::remove_if(diagnostics_.begin(), diagnostics_.end(),
                                    [](const auto& d) {
                                      return d->process.state() == ChildProcess::State::Exited ||
                                             d->process.state() == ChildProcess::State::Idle;
                                    }),
                     diagnostics_.end());
  workers_.erase(std::remove_if(workers_.begin(), workers_.end(),
                                [this](const auto& w) {
                                  return w->state() == Worker::State::Exited &&
                                         w->open_connections == 0 && !w->diagnostic_running &&
                                         slotOf(*w) == nullptr;
                                }),
                 workers_.end());
  if (stopping_ && stop_done_ && workers_.empty() && diagnostics_.empty()) {
    auto done = std::move(stop_done_);
    stop_done_ = nullptr;
    done();
  }
}

void Supervisor::count(RestartReason reason, uint32_t index, std::string detail) {
  ++restarts_[static_cast<size_t>(reason)];
  if (index >= slots_.size()) return;  // a slot the pool shrank away
  Slot& s = *slots_[index];
  ++s.restarts[static_cast<size_t>(reason)];
  s.last_restart = std::string(restartReasonName(reason)) + ": " + detail;
  s.last_restart_at = uv_now(loop_);
}

std::vector<SlotReport> Supervisor::slotReports() const {
  std::vector<SlotReport> out;
  out.reserve(slots_.size());
  for (const auto& s : slots_) {
    out.push_back({s->index, s->restarts, s->last_restart, s->last_restart_at});
  }
  return out;
}

uint32_t Supervisor::readyWorkers() const {
  uint32_t n = 0;
  for (const auto& w : workers_) n += w->dispatchable() ? 1 : 0;
  return n;
}

void Supervisor::updateAvailability() {
  bool available = false;
  if (!stopping_) {
    if (readyWorkers() > 0) {
      available = true;
    } else {
      // Waiting makes sense while some slot is still expected to come up: its first start, or
      // a restart after a worker that did run. Once every slot keeps failing to start, it
      // does not.
      for (const auto& s : slots_) available |= s->boot_failures == 0;
    }
  }
  available_ = available;
}

PoolStats Supervisor::stats() const {
  PoolStats st;
  for (const auto& w : workers_) {
    switch (w->state()) {
      case Worker::State::Starting: ++st.starting; break;
      case Worker::State::Ready:
        if (!w->dispatchable()) {
          ++st.stopping;  // found dead, exit not reported yet
        } else {
          ++(w->in_flight > 0 ? st.busy : st.ready);
        }
        break;
      case Worker::State::Stopping: ++st.stopping; break;
      case Worker::State::Exited: break;
    }
  }
  st.restarts = restarts_;
  return st;
}

}  // namespace loopguard::offload
