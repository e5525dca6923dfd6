#include "offload/worker.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <map>

extern char** environ;

namespace loopguard::offload {

namespace {

// The first probe comes soon (a fast app is up within milliseconds), then every 50 ms: cheap
// (one connect) and it keeps the time from "listening" to "ready" short.
constexpr uint64_t kFirstProbeMs = 10;
constexpr uint64_t kProbeIntervalMs = 50;
// One probe never waits longer than this for its answer; a slow answer just means "not yet".
constexpr uint64_t kProbeTimeoutMs = 1000;

// loopguard's own environment, then the pool's `env` (placeholders substituted), then
// LOOPGUARD_WORKER_INDEX. Later entries win.
std::vector<std::string> workerEnvironment(const config::Pool& config, const Substitutions& subs) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    vars[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
  }
  for (const auto& [name, value] : config.env) vars[name] = substitute(value, subs);
  vars["LOOPGUARD_WORKER_INDEX"] = subs.index;
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (const auto& [name, value] : vars) out.push_back(name + "=" + value);
  return out;
}

}  // namespace

Worker::Worker(uv_loop_t* loop, net::BufferPool& buffers, ProbeSet& probes, WorkerHost& host,
               const std::string& pool, uint32_t index, uint64_t generation,
               WorkerAddress address)
    : loop_(loop),
      buffers_(buffers),
      probes_(probes),
      host_(host),
      index_(index),
      generation_(generation),
      address_(std::move(address)),
      name_(pool + "/" + std::to_string(index)),
      process_(loop, *this, name_),
      timer_(loop, this, &uv::bindTimer<Worker, &Worker::onTimer>) {}

Worker::~Worker() {
  if (probe_ != nullptr) probe_->cancel();
}

bool Worker::start(const config::Pool& config, std::string& error) {
  Substitutions subs;
  if (address_.is_unix) {
    subs.socket = address_.path;
  } else {
    subs.port = std::to_string(address_.port);
  }
  subs.index = std::to_string(index_);
  SpawnSpec spec;
  for (const std::string& arg : config.command) spec.command.push_back(substitute(arg, subs));
  spec.env = workerEnvironment(config, subs);
  spec.workdir = config.workdir;
  started_at_ = uv_now(loop_);
  if (process_.spawn(spec, error) != 0) {
    state_ = State::Exited;
    return false;
  }
  ready_path_ = config.ready.path;
  ready_deadline_ = started_at_ + static_cast<uint64_t>(config.ready.timeout.count());
  state_ = State::Starting;
  timer_.start(kFirstProbeMs);
  return true;
}

void Worker::probeNow() {
  uint64_t now = uv_now(loop_);
  if (now >= ready_deadline_) {
    host_.onWorkerNotReady(*this, last_probe_.empty() ? "no probe finished" : last_probe_);
    return;
  }
  probe_ = &Probe::start(probes_, loop_, buffers_, address_, ready_path_,
                         std::min(kProbeTimeoutMs, ready_deadline_ - now), *this);
}

void Worker::onProbeResult(bool ready, const std::string& detail) {
  probe_ = nullptr;
  if (state_ != State::Starting) return;
  if (ready) {
    state_ = State::Ready;
    ready_at_ = std::max<uint64_t>(uv_now(loop_), 1);
    host_.onWorkerReady(*this);
    return;
  }
  last_probe_ = detail;
  if (uv_now(loop_) >= ready_deadline_) {
    host_.onWorkerNotReady(*this, last_probe_);
    return;
  }
  timer_.start(kProbeIntervalMs);
}

void Worker::onTimer() {
  switch (state_) {
    case State::Starting:
      if (probe_ == nullptr) probeNow();
      return;
    case State::Stopping:
      if (!term_sent_) {
        terminate(kill_grace_ms_);  // the delay of terminateAfter() is over
      } else {
        spdlog::get("offload")->warn("worker {} (pid {}) ignored SIGTERM: sending SIGKILL", name_,
                                     pid());
        process_.signalGroup(SIGKILL);
      }
      return;
    case State::Ready:
    case State::Exited:
      return;
  }
}

void Worker::beginStopping(const char* why, bool override_reason) {
  if (state_ == State::Stopping && override_reason) stop_why_ = why;
  if (state_ == State::Exited || state_ == State::Stopping) return;
  state_ = State::Stopping;
  stop_why_ = why;
  timer_.stop();
  if (probe_ != nullptr) {
    Probe* p = std::exchange(probe_, nullptr);
    p->cancel();
  }
}

void Worker::terminate(uint64_t grace_ms) {
  if (state_ == State::Exited) return;
  if (state_ != State::Stopping) beginStopping(stop_why_ != nullptr ? stop_why_ : "stopped");
  if (term_sent_) return;
  term_sent_ = true;
  process_.signalGroup(SIGTERM);
  timer_.start(grace_ms);
}

void Worker::terminateAfter(uint64_t delay_ms, uint64_t grace_ms) {
  if (state_ == State::Exited || term_sent_) return;
  if (state_ != State::Stopping) beginStopping(stop_why_ != nullptr ? stop_why_ : "stopped");
  kill_grace_ms_ = grace_ms;
  timer_.start(delay_ms);
}

void Worker::killNow() {
  if (state_ == State::Exited) return;
  if (state_ != State::Stopping) beginStopping(stop_why_ != nullptr ? stop_why_ : "killed");
  term_sent_ = true;
  timer_.stop();
  process_.signalGroup(SIGKILL);
}

void Worker::onChildExited(const ExitStatus& status) {
  state_ = State::Exited;
  timer_.stop();
  if (probe_ != nullptr) {
    Probe* p = std::exchange(probe_, nullptr);
    p->cancel();
  }
  host_.onWorkerExited(*this, status);
}

}  // namespace loopguard::offload
