// S1, stall-then-flush attribution (passive; the primary statistic). While a handler computes
// on the loop thread, nothing else of that process completes; whatever became ready meanwhile
// completes in a burst right after it. So: group one process's completions into bursts (gaps
// under 1 ms); a burst whose members were delayed past their endpoint's baseline, although they
// were ready before its head completed, is blamed on the head. Waiting handlers (sleep, a DB,
// a lock, a thread or process pool that releases the GIL) do not stall anyone and are rarely
// blamed; what blame they get comes from stalls nobody caused (GC, the CPU being taken away),
// and falls on every endpoint alike: the verdict compares each endpoint with that background.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "proxy/advice/completion.h"
#include "proxy/advice/cpu_wait.h"

namespace loopguard::advice {

struct FlushCounters {
  uint64_t completions = 0;
  uint64_t opportunities = 0;  // completions with another request in flight
  // Summed rate (per second) at which the process's other requests completed, at those
  // opportunities: how many victims a stall of a given length should have caught.
  double victim_rate_sum = 0;
  uint64_t blamed = 0;         // bursts it headed that held somebody
  uint64_t victims = 0;        // delayed members of those bursts
  double held_ms = 0;          // their summed hold
  // Block length estimates of the last blamed bursts (a ring), for a median.
  static constexpr size_t kEstimates = 32;
  std::array<float, kEstimates> block_ms{};
  uint32_t estimates = 0;  // written so far (the ring holds min(estimates, kEstimates))
};

class FlushAttribution {
 public:
  // `cpu_wait`: the loop thread's CPU usage (may stay empty); a stall it shows the thread was
  // starved of CPU for is nobody's.
  FlushAttribution(const StreamParams& params, const CpuWait& cpu_wait)
      : params_(params), cpu_wait_(cpu_wait) {}
  // Stalls with victims during which the loop thread was starved of CPU (not blamed).
  uint64_t cpuStalls() const { return cpu_stalls_; }

  // One completion, in time order. `base_ns`: the endpoint's baseline latency before this
  // response (-1 while unknown); `jitter_ns`: its typical latency above that baseline (its
  // responses count as held beyond held_ns + jitter_ns); `others_per_s`: the rate other
  // requests complete at now.
  void add(const Completion& c, int64_t base_ns, int64_t jitter_ns, double others_per_s);
  // Closes the burst in progress if it ended before `now_ns`.
  void settle(int64_t now_ns);

  const FlushCounters* counters(EndpointId e) const {
    return e < counters_.size() ? &counters_[e] : nullptr;
  }
  size_t endpointSlots() const { return counters_.size(); }

 private:
  struct Member {
    int64_t sent_ns;
    int64_t head_ns;
    int64_t base_ns;
    int64_t held_ns;  // latency above base_ns beyond which it was held
    EndpointId endpoint;
    bool victim_ok;
  };
  static constexpr size_t kMaxMembers = 64;

  FlushCounters& slot(EndpointId e);
  bool held(const Member& m) const;
  void closeBurst();
  void credit(EndpointId culprit, uint32_t delayed, double held_ms, int64_t max_hold_ns);

  StreamParams params_;
  const CpuWait& cpu_wait_;
  uint64_t cpu_stalls_ = 0;
  std::array<Member, kMaxMembers> burst_{};
  size_t burst_size_ = 0;
  int64_t last_head_ns_ = -1;
  // A burst whose first response was held and that had no unheld one: the first unheld
  // response before `trailer_until_ns_` shares its blame (unless it is `trailer_skip_`).
  int64_t trailer_until_ns_ = -1;
  EndpointId trailer_skip_ = 0;
  uint32_t trailer_delayed_ = 0;
  double trailer_held_ms_ = 0;
  int64_t trailer_max_hold_ns_ = 0;
  std::vector<FlushCounters> counters_;
};

// Median of the block estimates an endpoint's counters hold (0 if none).
double medianBlockMs(const FlushCounters& c);

}  // namespace loopguard::advice
