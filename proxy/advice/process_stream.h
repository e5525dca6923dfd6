// The observations of one upstream process (or, when processes cannot be told apart, of one
// endpoint address): its completions in time order, fed to the three statistics, plus each
// endpoint's latency baseline. O(1) per completion, memory bounded by the number of endpoints.
// Pure: no clock, no I/O; the Advisor passes times in.
#pragma once

#include <cstdint>
#include <vector>

#include "proxy/advice/completion.h"
#include "proxy/advice/flush_attribution.h"
#include "proxy/advice/probe_lag.h"
#include "proxy/advice/silence_test.h"

namespace loopguard::advice {

class ProcessStream {
 public:
  explicit ProcessStream(const StreamParams& params = {})
      : params_(params), flush_(params, cpu_wait_), probes_(params, cpu_wait_) {}
  ProcessStream(const ProcessStream&) = delete;
  ProcessStream& operator=(const ProcessStream&) = delete;

  void add(const Completion& c);
  // S3: the probe of this process went out / got its head / was lost.
  void probeSent(int64_t at_ns) { probes_.probeSent(at_ns); }
  void probeDone(int64_t at_ns) { probes_.probeDone(at_ns); }
  void probeLost() { probes_.probeLost(); }
  // A sample of the loop thread's cumulative CPU time and run-queue wait (where visible).
  void cpuSample(int64_t at_ns, int64_t total_run_ns, int64_t total_wait_ns) {
    cpu_wait_.add(at_ns, total_run_ns, total_wait_ns);
  }
  // Ends what time has ended: the burst in progress, probe rows past their horizon.
  void settle(int64_t now_ns);

  const FlushAttribution& flush() const { return flush_; }
  const SilenceTest& silence() const { return silence_; }
  const ProbeLag& probes() const { return probes_; }
  // The endpoint's baseline latency (its windowed minimum), -1 while not trusted yet.
  int64_t baselineNs(EndpointId e) const;
  // First and last completion seen (-1 before any).
  int64_t firstNs() const { return first_ns_; }
  int64_t lastNs() const { return last_ns_; }
  uint64_t completions() const { return completions_; }

 private:
  StreamParams params_;
  CpuWait cpu_wait_;  // before the statistics that refer to it
  FlushAttribution flush_;
  SilenceTest silence_;
  ProbeLag probes_;
  std::vector<WindowedMin> baselines_;
  std::vector<uint64_t> endpoint_completions_;
  // Each endpoint's typical latency above its baseline: a streaming median (frugal: it moves a
  // fixed step toward every new value), so an endpoint whose timers are coarse or whose work
  // varies is not taken for held on its ordinary jitter.
  std::vector<int64_t> jitter_ns_;
  int64_t first_ns_ = -1;
  int64_t last_ns_ = -1;
  uint64_t completions_ = 0;
};

}  // namespace loopguard::advice
