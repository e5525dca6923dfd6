#include "proxy/advice/probe_lag.h"

#include <algorithm>

namespace loopguard::advice {

void ProbeLag::probeSent(int64_t sent_ns) {
  if (probeInFlight()) probes_.pop_back();  // a probe is never sent over another one
  probes_.push_back(Probe{sent_ns, -1, {}});
  while (probes_.size() > kMaxProbes) probes_.pop_front();
}

int64_t ProbeLag::lagNs(const Probe& p) const {
  const int64_t base = base_.value();
  if (base < 0) return 0;
  if (cpu_wait_.starved(p.sent_ns, p.head_ns)) return 0;  // the machine's doing
  return std::max<int64_t>(0, (p.head_ns - p.sent_ns) - base);
}

void ProbeLag::count(EndpointId e, const Probe& p) {
  if (e >= counters_.size()) counters_.resize(static_cast<size_t>(e) + 1);
  ProbeCounters& c = counters_[e];
  const int64_t lag = lagNs(p);
  ++c.probes;
  if (lag > params_.held_ns) ++c.lagged;
  c.lag_ms += static_cast<double>(lag) / kNsPerMs;
}

void ProbeLag::probeDone(int64_t head_ns) {
  if (!probeInFlight()) return;
  Probe& p = probes_.back();
  p.head_ns = std::max(head_ns, p.sent_ns);
  base_.add(p.head_ns - p.sent_ns, params_.baseline_window);
  ++answered_;
  if (lagNs(p) > params_.held_ns) ++lagged_;
  for (EndpointId e : p.waiting) count(e, p);
  p.waiting.clear();
}

void ProbeLag::probeLost() {
  if (probeInFlight()) probes_.pop_back();
}

void ProbeLag::addRequest(EndpointId endpoint, int64_t head_ns, int64_t base_ns) {
  if (base_ns <= 0) return;
  const int64_t tail_start = head_ns - base_ns;
  for (auto it = probes_.rbegin(); it != probes_.rend(); ++it) {
    Probe& p = *it;
    if (p.sent_ns < tail_start) break;  // older ones were sent earlier still
    if (p.sent_ns > head_ns) continue;
    if (p.head_ns >= 0) {
      count(endpoint, p);
    } else if (p.waiting.size() < kMaxWaiting &&
               std::find(p.waiting.begin(), p.waiting.end(), endpoint) == p.waiting.end()) {
      p.waiting.push_back(endpoint);  // counted when its answer comes
    }
  }
}

void ProbeLag::settle(int64_t now_ns) {
  // Answered probes older than any tail can reach are of no more use.
  while (!probes_.empty() && probes_.front().head_ns >= 0 &&
         probes_.front().sent_ns < now_ns - params_.probe_horizon_ns) {
    probes_.pop_front();
  }
}

}  // namespace loopguard::advice
