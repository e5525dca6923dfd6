#include "proxy/advice/cpu_wait.h"

#include <algorithm>

namespace loopguard::advice {

void CpuWait::add(int64_t at_ns, int64_t total_run_ns, int64_t total_wait_ns) {
  if (count_ > 0) {
    const Sample& last = at(count_ - 1);
    if (at_ns <= last.at_ns) return;
    total_run_ns = std::max(total_run_ns, last.run_ns);
    total_wait_ns = std::max(total_wait_ns, last.wait_ns);
  }
  if (count_ == kSamples) {
    first_ = (first_ + 1) % kSamples;
    --count_;
  }
  samples_[(first_ + count_) % kSamples] = Sample{at_ns, total_run_ns, total_wait_ns};
  ++count_;
}

CpuWait::Sample CpuWait::totalsAt(int64_t t) const {
  size_t lo = 0, hi = count_ - 1;  // the last sample at or before t
  while (lo < hi) {
    size_t mid = (lo + hi + 1) / 2;
    if (at(mid).at_ns <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const Sample& a = at(lo);
  if (lo + 1 >= count_ || t <= a.at_ns) return a;
  const Sample& b = at(lo + 1);
  const double f = static_cast<double>(t - a.at_ns) / static_cast<double>(b.at_ns - a.at_ns);
  return Sample{t, a.run_ns + static_cast<int64_t>(f * static_cast<double>(b.run_ns - a.run_ns)),
                a.wait_ns + static_cast<int64_t>(f * static_cast<double>(b.wait_ns - a.wait_ns))};
}

CpuWait::Usage CpuWait::usage(int64_t from_ns, int64_t to_ns) const {
  Usage u;
  if (count_ < 2 || to_ns <= from_ns) return u;
  const int64_t a = std::max(from_ns, at(0).at_ns);
  const int64_t b = std::min(to_ns, at(count_ - 1).at_ns);
  if (b <= a) return u;
  const Sample sa = totalsAt(a), sb = totalsAt(b);
  u.covered_ns = b - a;
  u.run_ns = std::clamp<int64_t>(sb.run_ns - sa.run_ns, 0, b - a);
  u.wait_ns = std::clamp<int64_t>(sb.wait_ns - sa.wait_ns, 0, b - a);
  return u;
}

bool CpuWait::starved(int64_t from_ns, int64_t to_ns) const {
  const Usage u = usage(from_ns, to_ns);
  return u.covered_ns > 0 && 2 * u.wait_ns >= u.covered_ns && 10 * u.run_ns < u.covered_ns &&
         u.run_ns < 1'000'000;
}

bool parseSchedstat(std::string_view text, int64_t& run_ns, int64_t& wait_ns) {
  size_t i = 0;
  auto number = [&](int64_t& out) {
    while (i < text.size() && text[i] == ' ') ++i;
    if (i >= text.size() || text[i] < '0' || text[i] > '9') return false;
    int64_t v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') v = v * 10 + (text[i++] - '0');
    out = v;
    return true;
  };
  int64_t run = 0, wait = 0;
  if (!number(run) || !number(wait)) return false;
  run_ns = run;
  wait_ns = wait;
  return true;
}

}  // namespace loopguard::advice
