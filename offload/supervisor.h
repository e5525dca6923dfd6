// The lifecycle of a pool's worker processes: one slot per configured worker, each spawning,
// probing, restarting with backoff, recycling (replacement first), killing on request_timeout,
// and stopping everything on shutdown. It decides; the WorkerPool (SupervisorEvents) keeps the
// connections and requests in step with what it decides.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "config/config.h"
#include "offload/policy.h"
#include "offload/runtime_dir.h"
#include "offload/worker.h"
#include "common/net/buffer_pool.h"
#include "common/uv/loop.h"
#include "common/uv/timer.h"

namespace loopguard::offload {

class SupervisorEvents {
 public:
  virtual ~SupervisorEvents() = default;
  virtual void onWorkerReady(Worker& worker) = 0;     // it takes requests from now on
  virtual void onWorkerStopping(Worker& worker) = 0;  // it takes none from now on
  virtual void onWorkerExited(Worker& worker) = 0;    // the process is gone
  // available() or the number of dispatchable slots changed.
  virtual void onCapacityChanged() = 0;
};

// One configured worker slot's restart history (for /status): how often its processes were
// replaced, by RestartReason, and the last reason with what happened.
struct SlotReport {
  uint32_t index = 0;
  std::array<uint64_t, kRestartReasonCount> restarts{};
  std::string last_restart;       // e.g. "crash: signal 9 (SIGKILL)"; empty if none yet
  uint64_t last_restart_at = 0;   // loop time (ms) of the last one
};

class Supervisor final : private WorkerHost {
 public:
  Supervisor(uv_loop_t* loop, net::BufferPool& buffers, RuntimeDir& dir,
             SupervisorEvents& events, const config::Pool& config);
  // Every child must have exited (stop() finished, or never started).
  ~Supervisor() override;
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  void start();
  // A changed pool config: workers started with the old one are replaced like a recycle
  // (replacement first); the worker count grows or shrinks.
  void reconfigure(const config::Pool& config);
  // Graceful: no restarts; each worker is signalled once its requests are done (SIGTERM, then
  // SIGKILL after a grace). `done` runs (from a later loop turn) once every child has exited.
  void stop(std::function<void()> done);
  // SIGKILL to every child now (a second signal, or the drain budget ran out).
  void kill();

  const config::Pool& config() const { return config_; }
  const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }
  bool stopping() const { return stopping_; }
  // Stopping, and every child has exited and been swept.
  bool stopped() const { return stopping_ && workers_.empty() && diagnostics_.empty(); }
  // False while the pool has no ready worker and every slot is failing to start (or the pool
  // is stopping): waiting for it is pointless.
  bool available() const { return available_; }
  uint32_t readyWorkers() const;
  PoolStats stats() const;
  std::vector<SlotReport> slotReports() const;

  // Hooks from dispatch.
  void onDispatched(Worker& worker);    // recycle when max_requests is reached
  void onRequestDone(Worker& worker);   // signal a stopping worker once it is idle
  void onRequestTimeout(Worker& worker);  // kill it (after a running diagnostic) and replace it
  // A connection to `worker` ended in trouble: the worker closed it mid-request, or refused
  // it. Either the worker is dying (its exit report follows) or, if it is still alive after a
  // short grace, it goes back into rotation; one that keeps refusing connections while alive
  // is killed and replaced.
  void onWorkerTrouble(Worker& worker, bool refused, const std::string& why);
  void runDiagnostic(Worker& worker);   // on_slow, at most one at a time per worker
  void sweepSoon();                     // a worker or diagnostic may be deletable now

 private:
  struct Slot;
  struct Diagnostic;

  // WorkerHost
  void onWorkerReady(Worker& worker) override;
  void onWorkerNotReady(Worker& worker, const std::string& last_probe) override;
  void onWorkerExited(Worker& worker, const ExitStatus& status) override;

  Slot* slotOf(const Worker& worker);
  void spawnInto(Slot& slot);
  void bootFailed(Slot& slot);
  void scheduleRestart(Slot& slot);
  void onRestartTimer(Slot& slot);
  void beginRecycle(Worker& worker, RestartReason reason);
  void retire(Worker& worker, const char* why);
  // A replacement of one of slot `index`'s processes (loopguard_pool_worker_restarts_total).
  void count(RestartReason reason, uint32_t index, std::string detail);
  void updateAvailability();
  void checkRss();
  void checkSuspects();
  void onDiagnosticExited(Diagnostic& diagnostic);
  void sweep();
  // No more restarts, recycling or RSS checks; no slot waits for a worker any more.
  void enterStopping();
  void maybeFinishStop();
  void resizeSlots();

  uv_loop_t* loop_;
  net::BufferPool& buffers_;
  RuntimeDir& dir_;
  SupervisorEvents& events_;
  config::Pool config_;
  uint64_t config_generation_ = 0;
  uint64_t next_generation_ = 0;  // per spawned process, for unique socket paths
  std::vector<std::unique_ptr<Slot>> slots_;
  // Readiness probes of workers, each until its socket is closed (possibly after its worker is
  // swept). Before workers_: a worker going away cancels its probe into this set.
  ProbeSet probes_;
  std::vector<std::unique_ptr<Worker>> workers_;  // every process not yet swept, any state
  std::vector<std::unique_ptr<Diagnostic>> diagnostics_;
  std::array<uint64_t, kRestartReasonCount> restarts_{};
  uv::Timer rss_timer_;
  uv::Timer suspect_timer_;  // while some worker is suspected
  // Deferred deletion of exited workers and diagnostics, and the deferred stop callback: from
  // the loop's ready queue, never on the stack of the exit that made them deletable.
  uv::ReadyCall sweep_{this, &uv::bindMethod<Supervisor, &Supervisor::sweep>};
  std::mt19937_64 rng_;
  bool started_ = false;
  bool stopping_ = false;
  bool available_ = true;
  std::function<void()> stop_done_;
};

}  // namespace loopguard::offload
