// S2, silence before completion (passive; corroborates S1). A handler that computes on the loop
// is preceded by a silence: nothing else of its process completes while it runs. So for each
// completion, compare the gap since the process's previous completion with what the current
// completion rate predicts if completions were independent (Poisson: P(gap > x) = exp(-x/mean)).
// A blocker's completions follow a silence far more often than predicted; a waiter's about as
// often. Weak when the rate is low or the stall short (then x is small against the mean gap);
// cheap and needs no latency baseline, so it stands as a second opinion.
#pragma once

#include <cstdint>
#include <vector>

#include "proxy/advice/completion.h"

namespace loopguard::advice {

struct SilenceCounters {
  uint64_t n = 0;         // completions tested
  double observed = 0;    // those after a gap longer than x
  double expected = 0;    // sum of the Poisson probabilities of that
  double variance = 0;    // sum of p (1 - p)
  double gap_ms = 0;      // summed gap before its completions
  double mean_gap_ms = 0; // summed process mean gap at those times
};

class SilenceTest {
 public:
  // Bounds of the silence threshold x: half the process's mean gap, clamped to these.
  static constexpr int64_t kMinThresholdNs = 2 * kNsPerMs;
  static constexpr int64_t kMaxThresholdNs = 10 * kNsPerMs;

  void add(const Completion& c);
  const SilenceCounters* counters(EndpointId e) const {
    return e < counters_.size() ? &counters_[e] : nullptr;
  }
  double meanGapMs() const { return mean_gap_ns_ / kNsPerMs; }
  // Completions per second of the process, from the mean gap (0 before any).
  double ratePerSecond() const { return mean_gap_ns_ > 0 ? 1e9 / mean_gap_ns_ : 0; }

 private:
  int64_t last_head_ns_ = -1;
  double mean_gap_ns_ = 0;
  uint64_t gaps_ = 0;
  std::vector<SilenceCounters> counters_;
};

}  // namespace loopguard::advice
