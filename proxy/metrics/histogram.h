// A fixed-bucket latency histogram (Prometheus style: cumulative on export). Recording is a
// short linear scan over 16 bounds and three additions: cheap enough for every request.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace loopguard::metrics {

class Histogram {
 public:
  // Upper bounds in seconds, 1 ms to 60 s.
  static constexpr std::array<double, 16> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,   0.25,   0.5,   1.0,  2.5,   5.0,
                                                     10.0,  20.0,   30.0,  60.0};
  void record(double seconds) {
    size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i]) ++i;
    ++counts_[i];  // counts_[kBounds.size()] is the +Inf overflow
    sum_ += seconds;
    ++count_;
  }
  uint64_t bucket(size_t i) const { return counts_[i]; }  // non-cumulative
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::array<uint64_t, kBounds.size() + 1> counts_{};
  double sum_ = 0;
  uint64_t count_ = 0;
};

}  // namespace loopguard::metrics
