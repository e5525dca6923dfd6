// One worker process of a pool: the process (ChildProcess), where it listens, its readiness
// probing, and its lifecycle state. The Supervisor decides what happens to it; the WorkerPool
// keeps its dispatch bookkeeping (the public counters below) and its connections.
#pragma once

#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "config/config.h"
#include "offload/child_process.h"
#include "offload/policy.h"
#include "offload/probe.h"
#include "common/net/buffer_pool.h"
#include "common/uv/timer.h"

namespace loopguard::offload {

class Worker;

class WorkerHost {
 public:
  virtual ~WorkerHost() = default;
  virtual void onWorkerReady(Worker& worker) = 0;
  // ready.timeout passed without a successful probe. `last_probe` says what the last one saw.
  virtual void onWorkerNotReady(Worker& worker, const std::string& last_probe) = 0;
  // The process is gone (its output logged). The worker stays in state Exited.
  virtual void onWorkerExited(Worker& worker, const ExitStatus& status) = 0;
};

class Worker final : private ChildEvents, private ProbeOwner {
 public:
  enum class State {
    Starting,  // spawned, probed until ready or ready.timeout
    Ready,     // takes requests
    Stopping,  // takes no new requests; signalled once its requests are done (or at once)
    Exited,    // the process is gone; the object lives on until its connections are closed
  };

  // Its readiness probes go in `probes`, which outlives it (they may close after it is gone).
  Worker(uv_loop_t* loop, net::BufferPool& buffers, ProbeSet& probes, WorkerHost& host,
         const std::string& pool, uint32_t index, uint64_t generation, WorkerAddress address);
  ~Worker() override;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Spawns the process and starts probing it. False if it could not be spawned (`error` says
  // why; the state is Exited and no callback follows).
  bool start(const config::Pool& config, std::string& error);

  // No new requests from now on; no signal yet (it may finish its requests first). A stopping
  // worker keeps its first reason unless `override_reason` (a kill outranks a recycle).
  void beginStopping(const char* why, bool override_reason = false);
  // SIGTERM to its process group now, SIGKILL after `grace_ms` if it is still there.
  void terminate(uint64_t grace_ms);
  // terminate(grace_ms) after `delay_ms`, unless it is terminated before (e.g. to give an
  // on_slow diagnostic time to look at it first).
  void terminateAfter(uint64_t delay_ms, uint64_t grace_ms);
  void killNow();  // SIGKILL to the group

  State state() const { return state_; }
  bool dispatchable() const { return state_ == State::Ready && suspect_since_ == 0; }
  // It dropped a request or refused a connection: no requests until it is either reported
  // dead (its sockets close a moment before its exit is reported) or cleared.
  void suspect(uint64_t now) { suspect_since_ = std::max<uint64_t>(now, 1); }
  void clearSuspect() { suspect_since_ = 0; }
  bool suspected() const { return suspect_since_ != 0; }
  uint64_t suspectSince() const { return suspect_since_; }
  bool refusedBefore = false;  // it refused a connect once already while alive
  bool everReady() const { return ready_at_ != 0; }
  bool terminated() const { return term_sent_; }
  const char* stopReason() const { return stop_why_; }
  // Whether the process has exited, even if libuv has not reported it yet.
  bool processGone() const {
    return state_ == State::Exited || process_.exitedUnreaped();
  }

  int pid() const { return process_.pid(); }
  uint32_t index() const { return index_; }
  uint64_t generation() const { return generation_; }
  const WorkerAddress& address() const { return address_; }
  const std::string& name() const { return name_; }  // "pool/index"
  uint64_t startedAt() const { return started_at_; }
  uint64_t readyAt() const { return ready_at_; }
  std::string lastOutput() const { return process_.lastOutput(); }
  bool wroteAnything() const { return process_.wroteAnything(); }

  // Dispatch bookkeeping, kept by the WorkerPool.
  uint32_t in_flight = 0;         // requests connecting, running or finishing on it
  uint64_t served = 0;            // requests given to it
  uint64_t open_connections = 0;  // its ConnectionPool's connections (any state)

  // Supervision bookkeeping, kept by the Supervisor.
  uint64_t recycle_after = 0;                // served count that triggers a recycle (0 = never)
  uint64_t config_generation = 0;            // which pool config it was started with
  std::optional<RestartReason> retiring;     // a replacement is starting for this reason
  bool diagnostic_running = false;           // an on_slow command is looking at it

 private:
  void onChildExited(const ExitStatus& status) override;
  void onProbeResult(bool ready, const std::string& detail) override;
  void onTimer();
  void probeNow();

  uv_loop_t* loop_;
  net::BufferPool& buffers_;
  ProbeSet& probes_;
  WorkerHost& host_;
  uint32_t index_;
  uint64_t generation_;
  WorkerAddress address_;
  std::string name_;
  ChildProcess process_;
  uv::Timer timer_;  // Starting: next probe; Stopping: the delayed SIGTERM, then the SIGKILL
  Probe* probe_ = nullptr;
  State state_ = State::Starting;
  std::optional<std::string> ready_path_;
  uint64_t ready_deadline_ = 0;
  std::string last_probe_;
  uint64_t started_at_ = 0;
  uint64_t ready_at_ = 0;
  const char* stop_why_ = nullptr;
  bool term_sent_ = false;
  uint64_t suspect_since_ = 0;
  uint64_t kill_grace_ms_ = 0;  // for the pending terminateAfter()
};

}  // namespace loopguard::offload
