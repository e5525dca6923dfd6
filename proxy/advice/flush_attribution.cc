#include "proxy/advice/flush_attribution.h"

#include <algorithm>

namespace loopguard::advice {

FlushCounters& FlushAttribution::slot(EndpointId e) {
  if (e >= counters_.size()) counters_.resize(static_cast<size_t>(e) + 1);
  return counters_[e];
}

bool FlushAttribution::held(const Member& m) const {
  return m.base_ns >= 0 && (m.head_ns - m.sent_ns) - m.base_ns > m.held_ns;
}

void FlushAttribution::add(const Completion& c, int64_t base_ns, int64_t jitter_ns,
                           double others_per_s) {
  FlushCounters& counters = slot(c.endpoint);
  ++counters.completions;
  if (c.others_in_flight) {
    ++counters.opportunities;
    counters.victim_rate_sum += others_per_s;
  }
  if (burst_size_ > 0 && c.head_ns - last_head_ns_ >= params_.burst_gap_ns) closeBurst();
  const Member m{c.sent_ns, c.head_ns, base_ns, params_.held_ns + std::max<int64_t>(0, jitter_ns),
                 c.endpoint, c.victim_ok};
  if (trailer_until_ns_ >= 0 && burst_size_ == 0) {
    if (c.head_ns > trailer_until_ns_) {
      trailer_until_ns_ = -1;
    } else if (!held(m)) {
      trailer_until_ns_ = -1;
      if (c.endpoint != trailer_skip_) {
        credit(c.endpoint, trailer_delayed_, trailer_held_ms_, trailer_max_hold_ns_);
      }
    }
  }
  if (burst_size_ < kMaxMembers) burst_[burst_size_++] = m;
  last_head_ns_ = std::max(last_head_ns_, c.head_ns);
}

void FlushAttribution::settle(int64_t now_ns) {
  if (burst_size_ > 0 && now_ns - last_head_ns_ >= params_.burst_gap_ns) closeBurst();
  if (trailer_until_ns_ >= 0 && now_ns > trailer_until_ns_) trailer_until_ns_ = -1;
}

void FlushAttribution::closeBurst() {
  const size_t n = burst_size_;
  burst_size_ = 0;
  if (n < 2) return;
  // The culprit: the burst's first response, unless (skip_held_head) that one was itself held
  // and the second was not: a handler whose result comes back through another thread (a
  // thread pool holding the GIL) wakes the loop with a callback that another waiting callback
  // may overtake. Only one place: a blocker whose own time varies is often "held" too, and the
  // first unheld response further down a flush is merely the first that was not kept waiting.
  size_t culprit = 0;
  if (params_.skip_held_head && held(burst_[0]) && !held(burst_[1])) culprit = 1;
  const int64_t t_culprit = burst_[culprit].head_ns;
  uint32_t delayed = 0;
  double held_ms = 0;
  int64_t max_hold_ns = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i == culprit) continue;
    const Member& m = burst_[i];
    if (!m.victim_ok || !held(m)) continue;
    const int64_t ready_ns = m.sent_ns + m.base_ns;
    if (ready_ns >= t_culprit) continue;  // became ready only after the culprit was done
    const int64_t excess_ns = (m.head_ns - m.sent_ns) - m.base_ns;
    const int64_t hold_ns = std::min(excess_ns, t_culprit - ready_ns);
    ++delayed;
    held_ms += static_cast<double>(hold_ns) / kNsPerMs;
    max_hold_ns = std::max(max_hold_ns, hold_ns);
  }
  if (delayed == 0) return;
  // The stall as its longest victim saw it: if the loop thread spent it waiting for a CPU
  // without running, no handler of this process caused it.
  if (cpu_wait_.starved(t_culprit - max_hold_ns, t_culprit)) {
    ++cpu_stalls_;
    return;
  }
  credit(burst_[culprit].endpoint, delayed, held_ms, max_hold_ns);
  if (params_.trailer_ns <= 0 || !held(burst_[0])) return;
  // The first response was a victim itself: the first unheld one shares the blame.
  for (size_t i = 1; i < n; ++i) {
    if (held(burst_[i])) continue;
    if (i != culprit && burst_[i].endpoint != burst_[culprit].endpoint) {
      credit(burst_[i].endpoint, delayed, held_ms, max_hold_ns);
    }
    return;
  }
  trailer_until_ns_ = burst_[n - 1].head_ns + params_.trailer_ns;
  trailer_skip_ = burst_[culprit].endpoint;
  trailer_delayed_ = delayed;
  trailer_held_ms_ = held_ms;
  trailer_max_hold_ns_ = max_hold_ns;
}

void FlushAttribution::credit(EndpointId culprit, uint32_t delayed, double held_ms,
                              int64_t max_hold_ns) {
  FlushCounters& c = slot(culprit);
  ++c.blamed;
  c.victims += delayed;
  c.held_ms += held_ms;
  // The victims' ready times fall evenly over the stall; only those ready more than held_ns
  // before its end count, so with k of them the stall is about
  // held + (max hold - held) * (k + 1) / k (the unbiased estimate of a uniform's upper end).
  const double floor_ms = static_cast<double>(params_.held_ns) / kNsPerMs;
  const double max_ms = static_cast<double>(max_hold_ns) / kNsPerMs;
  const double estimate =
      floor_ms + std::max(0.0, max_ms - floor_ms) * (delayed + 1.0) / static_cast<double>(delayed);
  c.block_ms[c.estimates % FlushCounters::kEstimates] = static_cast<float>(estimate);
  ++c.estimates;
}

double medianBlockMs(const FlushCounters& c) {
  const size_t n = std::min<size_t>(c.estimates, FlushCounters::kEstimates);
  if (n == 0) return 0;
  std::array<float, FlushCounters::kEstimates> v = c.block_ms;
  std::nth_element(v.begin(), v.begin() + n / 2, v.begin() + n);
  return v[n / 2];
}

}  // namespace loopguard::advice
