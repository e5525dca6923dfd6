// S3, triggered probe lag (active; with `advice.probe: true`). A trivial request sent while a
// handler computes on the loop waits out the rest of that computation. So while suspects are in
// flight, a probe goes out every 10-20 ms on its own connection to the process, and each probe
// is credited to every endpoint whose service tail [head - baseline, head] it was sent in. An
// endpoint that computes on the loop during its tail makes most of its probes lag; a waiter's
// probes lag only as often as any probe does (the background: the CPU taken away, a GC, other
// blockers). It needs no victims and no luck with arrival phases, which paced traffic makes the
// passive statistics depend on.
//
// (The notes' regression of lag on tail overlap was tried first; on a loaded machine a waiter
// whose tails cover most probes soaked up the blockers' lag, so each endpoint is now compared
// with the background on its own.)
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "proxy/advice/completion.h"
#include "proxy/advice/cpu_wait.h"

namespace loopguard::advice {

struct ProbeCounters {
  uint64_t probes = 0;  // probes sent within its tails
  uint64_t lagged = 0;  // of those, answered late
  double lag_ms = 0;    // their summed lag
};

class ProbeLag {
 public:
  ProbeLag(const StreamParams& params, const CpuWait& cpu_wait)
      : params_(params), cpu_wait_(cpu_wait) {}

  void probeSent(int64_t sent_ns);
  void probeDone(int64_t head_ns);  // the probe in flight got its head
  void probeLost();                 // ...or never will
  bool probeInFlight() const { return !probes_.empty() && probes_.back().head_ns < 0; }
  // A request completed: the probes sent within its tail [head - base, head] are its.
  void addRequest(EndpointId endpoint, int64_t head_ns, int64_t base_ns);
  void settle(int64_t now_ns);

  const ProbeCounters* counters(EndpointId e) const {
    return e < counters_.size() ? &counters_[e] : nullptr;
  }
  uint64_t probes() const { return answered_; }
  uint64_t lagged() const { return lagged_; }
  double probeBaseMs() const {
    return base_.value() < 0 ? 0 : static_cast<double>(base_.value()) / kNsPerMs;
  }

 private:
  struct Probe {
    int64_t sent_ns;
    int64_t head_ns;  // -1 while in flight
    std::vector<EndpointId> waiting;  // endpoints that claimed it before its answer
  };
  static constexpr size_t kMaxProbes = 256;
  static constexpr size_t kMaxWaiting = 16;

  // Lag over the probe's own baseline; none if the loop thread was starved of CPU meanwhile.
  int64_t lagNs(const Probe& p) const;
  void count(EndpointId e, const Probe& p);

  StreamParams params_;
  const CpuWait& cpu_wait_;
  std::deque<Probe> probes_;  // oldest first; sent times increase
  WindowedMin base_;
  uint64_t answered_ = 0;
  uint64_t lagged_ = 0;
  std::vector<ProbeCounters> counters_;
};

}  // namespace loopguard::advice
