#include "proxy/advice/probe_regression.h"

#include <algorithm>
#include <cmath>

namespace loopguard::advice {

void ProbeRegression::probeSent(int64_t sent_ns) {
  if (probeInFlight()) probes_.pop_back();  // a probe is never sent over another one
  probes_.push_back(Probe{sent_ns, -1, {}});
  while (probes_.size() > kMaxProbes) {
    if (probes_.front().head_ns >= 0) fold(probes_.front());
    probes_.pop_front();
  }
}

void ProbeRegression::probeDone(int64_t head_ns) {
  if (!probeInFlight()) return;
  Probe& p = probes_.back();
  p.head_ns = std::max(head_ns, p.sent_ns);
  base_.add(p.head_ns - p.sent_ns, params_.baseline_window);
  ++probes_done_;
}

void ProbeRegression::probeLost() {
  if (probeInFlight()) probes_.pop_back();
}

void ProbeRegression::addRequest(EndpointId endpoint, int64_t head_ns, int64_t base_ns) {
  if (base_ns <= 0) return;
  const int64_t tail_start = head_ns - base_ns;
  for (auto it = probes_.rbegin(); it != probes_.rend(); ++it) {
    Probe& p = *it;
    if (p.head_ns >= 0 && p.head_ns <= tail_start) break;  // older probes ended earlier still
    const int64_t from = std::max(p.sent_ns, tail_start);
    const int64_t to = p.head_ns < 0 ? head_ns : std::min(p.head_ns, head_ns);
    if (to <= from) continue;
    const float ms = static_cast<float>(to - from) / kNsPerMs;
    auto same = std::find_if(p.row.begin(), p.row.end(),
                             [&](const Overlap& o) { return o.endpoint == endpoint; });
    if (same != p.row.end()) {
      same->ms += ms;
    } else if (p.row.size() < kMaxRow) {
      p.row.push_back(Overlap{endpoint, ms});
    }
  }
}

void ProbeRegression::settle(int64_t now_ns) {
  while (!probes_.empty() && probes_.front().head_ns >= 0 &&
         probes_.front().head_ns < now_ns - params_.probe_horizon_ns) {
    fold(probes_.front());
    probes_.pop_front();
  }
}

void ProbeRegression::fold(const Probe& p) {
  const int64_t base = base_.value();
  if (base < 0) return;
  const double y = std::max<double>(0, static_cast<double>((p.head_ns - p.sent_ns) - base) / kNsPerMs);
  ++rows_;
  yty_ += y * y;
  xty_[kIntercept] += y;
  xtx_[pairKey(kIntercept, kIntercept)] += 1;
  for (size_t i = 0; i < p.row.size(); ++i) {
    const Overlap& a = p.row[i];
    ++covered_[a.endpoint];
    xty_[a.endpoint] += a.ms * y;
    xtx_[pairKey(a.endpoint, kIntercept)] += a.ms;
    for (size_t j = i; j < p.row.size(); ++j) {
      const Overlap& b = p.row[j];
      xtx_[pairKey(a.endpoint, b.endpoint)] += static_cast<double>(a.ms) * b.ms;
    }
  }
}

namespace {

// Inverts a small symmetric positive semi-definite matrix in place (Gauss-Jordan with partial
// pivoting); near-singular pivots get a ridge. Returns false if hopeless.
bool invert(std::vector<double>& m, size_t n) {
  std::vector<double> inv(n * n, 0.0);
  for (size_t i = 0; i < n; ++i) inv[i * n + i] = 1.0;
  for (size_t col = 0; col < n; ++col) {
    size_t pivot = col;
    for (size_t r = col + 1; r < n; ++r) {
      if (std::fabs(m[r * n + col]) > std::fabs(m[pivot * n + col])) pivot = r;
    }
    if (pivot != col) {
      for (size_t k = 0; k < n; ++k) {
        std::swap(m[col * n + k], m[pivot * n + k]);
        std::swap(inv[col * n + k], inv[pivot * n + k]);
      }
    }
    double d = m[col * n + col];
    if (std::fabs(d) < 1e-9) d = d < 0 ? -1e-9 : 1e-9;
    for (size_t k = 0; k < n; ++k) {
      m[col * n + k] /= d;
      inv[col * n + k] /= d;
    }
    for (size_t r = 0; r < n; ++r) {
      if (r == col) continue;
      const double f = m[r * n + col];
      if (f == 0) continue;
      for (size_t k = 0; k < n; ++k) {
        m[r * n + k] -= f * m[col * n + k];
        inv[r * n + k] -= f * inv[col * n + k];
      }
    }
  }
  m.swap(inv);
  return true;
}

}  // namespace

std::vector<ProbeFit> ProbeRegression::solve() const {
  std::vector<std::pair<uint64_t, EndpointId>> by_coverage;
  for (const auto& [e, n] : covered_) by_coverage.emplace_back(n, e);
  std::sort(by_coverage.begin(), by_coverage.end(), std::greater<>());
  if (by_coverage.size() > kMaxColumns) by_coverage.resize(kMaxColumns);
  std::vector<EndpointId> cols{kIntercept};
  for (const auto& [n, e] : by_coverage) cols.push_back(e);
  const size_t p = cols.size();
  if (p == 1 || rows_ < p + 2) return {};

  auto get = [this](const std::unordered_map<uint64_t, double>& m, uint64_t k) {
    auto it = m.find(k);
    return it == m.end() ? 0.0 : it->second;
  };
  std::vector<double> a(p * p), b(p);
  for (size_t i = 0; i < p; ++i) {
    auto it = xty_.find(cols[i]);
    b[i] = it == xty_.end() ? 0.0 : it->second;
    for (size_t j = 0; j < p; ++j) a[i * p + j] = get(xtx_, pairKey(cols[i], cols[j]));
  }
  // Non-negative least squares by cyclic coordinate descent on the normal equations.
  std::vector<double> beta(p, 0.0);
  for (int sweep = 0; sweep < 400; ++sweep) {
    double change = 0;
    for (size_t j = 0; j < p; ++j) {
      const double ajj = a[j * p + j];
      if (ajj <= 0) continue;
      double r = b[j];
      for (size_t k = 0; k < p; ++k) {
        if (k != j) r -= a[j * p + k] * beta[k];
      }
      const double next = std::max(0.0, r / ajj);
      change = std::max(change, std::fabs(next - beta[j]));
      beta[j] = next;
    }
    if (change < 1e-7) break;
  }
  double rss = yty_;
  for (size_t i = 0; i < p; ++i) {
    rss -= 2 * beta[i] * b[i];
    for (size_t j = 0; j < p; ++j) rss += beta[i] * a[i * p + j] * beta[j];
  }
  const double sigma2 = std::max(0.0, rss) / static_cast<double>(rows_ - p);
  std::vector<double> inv = a;
  invert(inv, p);

  std::vector<ProbeFit> out;
  for (size_t i = 1; i < p; ++i) {
    ProbeFit f;
    f.endpoint = cols[i];
    f.beta = beta[i];
    f.se = std::sqrt(std::max(0.0, sigma2 * inv[i * p + i]));
    f.rows = coverage(cols[i]);
    out.push_back(f);
  }
  return out;
}

}  // namespace loopguard::advice
