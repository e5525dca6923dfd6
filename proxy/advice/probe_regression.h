// S3, triggered probe lag (active; with `advice.probe: true`). A trivial request sent while a
// handler computes on the loop waits out the rest of its computation. So: while suspects are in
// flight, a probe goes out every 10-20 ms on its own connection to the process; its lag (latency
// over the probe's own minimum) is regressed, by non-negative least squares with an intercept,
// on how much each endpoint's service tail [head - baseline, head] overlapped the probe's
// lifetime. beta ~ the fraction of an endpoint's minimal latency spent on the loop: ~0.85 for
// handlers that compute, ~0 for I/O, ~0.2 from mere CPU contention. No victims needed, and it
// does not depend on the arrival pattern, which paced traffic makes the passive statistics do.
#pragma once

#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "proxy/advice/completion.h"

namespace loopguard::advice {

struct ProbeFit {
  EndpointId endpoint = 0;
  double beta = 0;    // lag per ms of overlap
  double se = 0;      // its standard error (unconstrained least squares)
  uint64_t rows = 0;  // probes its tails overlapped
};

class ProbeRegression {
 public:
  // Endpoints (by coverage) the solve keeps, so its cost stays bounded.
  static constexpr size_t kMaxColumns = 48;

  explicit ProbeRegression(const StreamParams& params) : params_(params) {}

  void probeSent(int64_t sent_ns);
  void probeDone(int64_t head_ns);  // the probe in flight got its head
  void probeLost();                 // ...or never will
  bool probeInFlight() const { return !probes_.empty() && probes_.back().head_ns < 0; }
  // A request completed: its tail [head - base, head] overlaps recent probes.
  void addRequest(EndpointId endpoint, int64_t head_ns, int64_t base_ns);
  // Folds probe rows that can no longer change into the normal equations.
  void settle(int64_t now_ns);

  uint64_t rows() const { return rows_; }
  uint64_t probes() const { return probes_done_; }
  double probeBaseMs() const {
    return base_.value() < 0 ? 0 : static_cast<double>(base_.value()) / kNsPerMs;
  }
  uint64_t coverage(EndpointId e) const {
    auto it = covered_.find(e);
    return it == covered_.end() ? 0 : it->second;
  }
  // The current fit for every endpoint with coverage (at most kMaxColumns, most covered first).
  std::vector<ProbeFit> solve() const;

 private:
  struct Overlap {
    EndpointId endpoint;
    float ms;
  };
  struct Probe {
    int64_t sent_ns;
    int64_t head_ns;  // -1 while in flight
    std::vector<Overlap> row;
  };
  static constexpr size_t kMaxRow = 12;
  static constexpr size_t kMaxProbes = 512;
  static constexpr EndpointId kIntercept = 0xffffffffu;

  void fold(const Probe& p);
  static uint64_t pairKey(EndpointId a, EndpointId b) {
    return a < b ? (uint64_t{a} << 32) | b : (uint64_t{b} << 32) | a;
  }

  StreamParams params_;
  std::deque<Probe> probes_;  // oldest first; sent times increase
  WindowedMin base_;
  uint64_t rows_ = 0;
  uint64_t probes_done_ = 0;
  double yty_ = 0;
  std::unordered_map<EndpointId, double> xty_;
  std::unordered_map<uint64_t, double> xtx_;
  std::unordered_map<EndpointId, uint64_t> covered_;
};

}  // namespace loopguard::advice
