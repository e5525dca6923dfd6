#include "proxy/advice/silence_test.h"

#include <algorithm>
#include <cmath>

namespace loopguard::advice {

namespace {
// The mean gap is an exponentially weighted mean over about this many completions; the first
// ones use the plain mean.
constexpr double kMeanWindow = 64;
constexpr uint64_t kWarmUp = 16;
}  // namespace

void SilenceTest::add(const Completion& c) {
  if (last_head_ns_ < 0) {
    last_head_ns_ = c.head_ns;
    return;
  }
  const double gap = static_cast<double>(std::max<int64_t>(0, c.head_ns - last_head_ns_));
  last_head_ns_ = std::max(last_head_ns_, c.head_ns);
  if (gaps_ >= kWarmUp) {
    const double x = std::clamp(mean_gap_ns_ / 2, static_cast<double>(kMinThresholdNs),
                                static_cast<double>(kMaxThresholdNs));
    const double p = std::exp(-x / std::max(mean_gap_ns_, 1.0));
    if (c.endpoint >= counters_.size()) counters_.resize(static_cast<size_t>(c.endpoint) + 1);
    SilenceCounters& s = counters_[c.endpoint];
    ++s.n;
    s.observed += gap > x ? 1.0 : 0.0;
    s.expected += p;
    s.variance += p * (1 - p);
    s.gap_ms += gap / kNsPerMs;
    s.mean_gap_ms += mean_gap_ns_ / kNsPerMs;
  }
  ++gaps_;
  const double weight = gaps_ <= kWarmUp ? 1.0 / static_cast<double>(gaps_) : 1.0 / kMeanWindow;
  mean_gap_ns_ += (gap - mean_gap_ns_) * weight;
}

}  // namespace loopguard::advice
