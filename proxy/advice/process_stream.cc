#include "proxy/advice/process_stream.h"

#include <algorithm>

namespace loopguard::advice {

int64_t ProcessStream::baselineNs(EndpointId e) const {
  if (e >= baselines_.size() || baselines_[e].samples() < params_.baseline_min_samples) return -1;
  return baselines_[e].value();
}

void ProcessStream::add(const Completion& in) {
  Completion c = in;
  // One loop stamps every head, so times only go forward; guard against a clock that did not.
  if (c.head_ns < last_ns_) c.head_ns = last_ns_;
  if (c.sent_ns > c.head_ns) c.sent_ns = c.head_ns;
  if (first_ns_ < 0) first_ns_ = c.head_ns;
  last_ns_ = c.head_ns;
  ++completions_;
  if (c.endpoint >= baselines_.size()) {
    baselines_.resize(static_cast<size_t>(c.endpoint) + 1);
    endpoint_completions_.resize(static_cast<size_t>(c.endpoint) + 1);
    jitter_ns_.resize(static_cast<size_t>(c.endpoint) + 1);
  }
  ++endpoint_completions_[c.endpoint];
  const int64_t base = baselineNs(c.endpoint);  // before this response: it is judged by the others
  // The rate of the others: the process's rate less this endpoint's share of it.
  const double share = static_cast<double>(endpoint_completions_[c.endpoint]) /
                       static_cast<double>(completions_);
  int64_t& jitter = jitter_ns_[c.endpoint];
  flush_.add(c, base, jitter, silence_.ratePerSecond() * (1 - share));
  silence_.add(c);
  probes_.addRequest(c.endpoint, c.head_ns, base);
  if (base >= 0) {
    constexpr int64_t kStep = 50'000;  // 50 us per response
    const int64_t excess = (c.head_ns - c.sent_ns) - base;
    jitter += excess > jitter ? kStep : (excess < jitter ? -kStep : 0);
    if (jitter < 0) jitter = 0;
  }
  baselines_[c.endpoint].add(c.head_ns - c.sent_ns, params_.baseline_window);
}

void ProcessStream::settle(int64_t now_ns) {
  flush_.settle(now_ns);
  probes_.settle(now_ns);
}

}  // namespace loopguard::advice
