// The status page's "last minute": log-linear latency buckets and the ring of per-second slots.
#include "proxy/metrics/recent_window.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace loopguard::metrics {
namespace {

TEST(LatencyBuckets, BoundsAreContiguousAndEachValueFallsInsideItsBucket) {
  EXPECT_DOUBLE_EQ(LatencyBuckets::lowerBound(0), 0.0);
  for (size_t i = 0; i + 1 < LatencyBuckets::kCount; ++i) {
    EXPECT_DOUBLE_EQ(LatencyBuckets::upperBound(i), LatencyBuckets::lowerBound(i + 1)) << i;
    EXPECT_LT(LatencyBuckets::lowerBound(i), LatencyBuckets::upperBound(i)) << i;
  }
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> log_seconds(std::log(1e-5), std::log(200.0));
  for (int n = 0; n < 100'000; ++n) {
    double v = std::exp(log_seconds(rng));
    size_t i = LatencyBuckets::index(v);
    ASSERT_LT(i, LatencyBuckets::kCount);
    // Microsecond truncation: a value may sit up to 1 µs below its bucket's lower bound.
    EXPECT_GE(v + 1e-6, LatencyBuckets::lowerBound(i)) << v;
    EXPECT_LT(v, LatencyBuckets::upperBound(i)) << v;
  }
}

TEST(LatencyBuckets, EdgesAndOddInputs) {
  EXPECT_EQ(LatencyBuckets::index(0), 0u);
  EXPECT_EQ(LatencyBuckets::index(-1), 0u);
  EXPECT_EQ(LatencyBuckets::index(NAN), 0u);
  EXPECT_EQ(LatencyBuckets::index(0.000127), 0u);
  EXPECT_EQ(LatencyBuckets::index(0.000128), 1u);
  EXPECT_EQ(LatencyBuckets::index(1e9), LatencyBuckets::kCount - 1);
  EXPECT_EQ(LatencyBuckets::index(INFINITY), LatencyBuckets::kCount - 1);
  EXPECT_TRUE(std::isinf(LatencyBuckets::upperBound(LatencyBuckets::kCount - 1)));
}

TEST(LatencyBuckets, QuantilesAreWithinSevenPercentOfTheExactOnes) {
  std::mt19937_64 rng(2);
  std::lognormal_distribution<double> latency(std::log(0.030), 1.0);  // ~30 ms, long tail
  std::array<uint32_t, LatencyBuckets::kCount> counts{};
  std::vector<double> values;
  for (int n = 0; n < 50'000; ++n) {
    double v = latency(rng);
    values.push_back(v);
    ++counts[LatencyBuckets::index(v)];
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    double exact = values[static_cast<size_t>(std::ceil(q * values.size())) - 1];
    double estimate = *LatencyBuckets::quantile(counts, q);
    EXPECT_NEAR(estimate / exact, 1.0, 0.07) << "q=" << q << " exact " << exact;
  }
  EXPECT_FALSE(LatencyBuckets::quantile(std::array<uint32_t, LatencyBuckets::kCount>{}, 0.5));
}

TEST(RecentWindow, SummarisesTheLastSixtySecondsOnly) {
  RecentWindow w;
  EXPECT_EQ(w.summary(0).requests, 0u);
  EXPECT_FALSE(w.summary(0).p50);
  const uint64_t t0 = 1'000'000;  // ms
  // 100 fast requests at t0, then one slow one 30 s later.
  for (int i = 0; i < 100; ++i) w.recordResponse(t0 + 10 * i, 0.010, 200);
  w.recordResponse(t0 + 30'000, 2.0, 503);
  w.recordRefusal(t0 + 30'000);
  RecentWindow::Summary s = w.summary(t0 + 30'500);
  EXPECT_EQ(s.requests, 101u);
  EXPECT_EQ(s.server_errors, 1u);
  EXPECT_EQ(s.refusals, 1u);
  EXPECT_NEAR(*s.p50, 0.010, 0.0007);
  EXPECT_NEAR(*s.p99, 0.010, 0.0007);  // 1 slow in 101: the 100th value is still fast
  EXPECT_EQ(s.seconds, 31u);
  // 60 s after t0's second ends, the fast ones have left the window; the slow one has not.
  s = w.summary(t0 + 60'000);
  EXPECT_EQ(s.requests, 1u);
  EXPECT_NEAR(*s.p50, 2.0, 0.13);
  EXPECT_EQ(s.seconds, 60u);
  // Much later everything is gone, and a new record does not resurrect old slots.
  s = w.summary(t0 + 10 * 60'000);
  EXPECT_EQ(s.requests, 0u);
  w.recordResponse(t0 + 10 * 60'000 + 30'000, 0.5, 200);  // same ring slot as t0 + 30 s
  s = w.summary(t0 + 10 * 60'000 + 30'000);
  EXPECT_EQ(s.requests, 1u);
  EXPECT_EQ(s.refusals, 0u);
}

TEST(RecentWindow, PerSecondSeriesEndsAtTheCurrentSecond) {
  RecentWindow w;
  const uint64_t t0 = 5'000'000;
  w.recordResponse(t0, 0.001, 200);
  w.recordResponse(t0 + 2'000, 0.100, 200);
  w.recordResponse(t0 + 2'400, 0.100, 200);
  w.recordRefusal(t0 + 2'999);
  std::vector<RecentWindow::Second> s = w.perSecond(t0 + 2'500);
  ASSERT_EQ(s.size(), RecentWindow::kSeconds);
  EXPECT_EQ(s[59].requests, 2u);  // the current second
  EXPECT_EQ(s[59].refusals, 1u);
  EXPECT_NEAR(*s[59].p99, 0.100, 0.007);
  EXPECT_EQ(s[58].requests, 0u);
  EXPECT_FALSE(s[58].p99);
  EXPECT_EQ(s[57].requests, 1u);
  EXPECT_EQ(s[56].requests, 0u);
  // Read 59 s later, t0's second is the oldest entry; a second later it is gone.
  EXPECT_EQ(w.perSecond(t0 + 59'000)[0].requests, 1u);
  EXPECT_EQ(w.perSecond(t0 + 60'000)[0].requests, 0u);
  // Early in the clock's life (fewer than 60 s since 0) there is nothing before 0.
  RecentWindow early;
  early.recordResponse(1'500, 0.002, 200);
  EXPECT_EQ(early.perSecond(1'500)[59].requests, 1u);
  EXPECT_EQ(early.summary(1'500).requests, 1u);
}

TEST(RecentWindow, MemoryIsBoundedAndTakenOnFirstUse) {
  // The slots are allocated once, on the first record, whatever the traffic.
  EXPECT_LE(sizeof(RecentWindow), 32u);
  RecentWindow w;
  for (uint64_t t = 0; t < 3 * 60'000; t += 7) w.recordResponse(t, 0.001 * (t % 100), 200);
  EXPECT_LE(RecentWindow::kSeconds * LatencyBuckets::kCount * sizeof(uint32_t), 40u * 1024);
  EXPECT_EQ(w.summary(3 * 60'000 - 1).requests, 60'000u / 7 + 1);  // seconds 120..179
}

}  // namespace
}  // namespace loopguard::metrics
