// The adaptive concurrency limit: the update rule, its baseline, the sharing between routes and
// the advisor's seam on a fake clock; and the whole loop (limiter, queue policy, controller)
// against simulated apps whose capacity is known by construction.
#include "proxy/routing/adaptive_limit.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <numeric>
#include <string>
#include <vector>

#include "proxy/routing/route_latency.h"
#include "tests/unit/support/limiter_test_support.h"
#include "tests/unit/support/overload_sim.h"

namespace loopguard::routing {
namespace {

using sim::AppModel;
using sim::OverloadSim;

config::RouteLimits autoLimits(uint64_t min = 1, uint64_t max = 1000, uint64_t max_queue = 10000,
                               config::QueueOrder order = config::QueueOrder::Adaptive) {
  config::RouteLimits limits;
  limits.max_in_flight_auto = true;
  limits.max_in_flight_min = min;
  limits.max_in_flight_max = max;
  limits.max_queue = max_queue;
  limits.queue_timeout = milliseconds(30'000);
  limits.queue_order = order;
  return limits;
}

double mean(const std::vector<uint64_t>& v, size_t from = 0) {
  if (v.size() <= from) return 0;
  return std::accumulate(v.begin() + static_cast<long>(from), v.end(), 0.0) /
         static_cast<double>(v.size() - from);
}

uint64_t minOf(const std::vector<uint64_t>& v, size_t from = 0) {
  return *std::min_element(v.begin() + static_cast<long>(from), v.end());
}

uint64_t maxOf(const std::vector<uint64_t>& v, size_t from = 0) {
  return *std::max_element(v.begin() + static_cast<long>(from), v.end());
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

// ---------------------------------------------------------------------------------------------
// The update rule

TEST(GradientControllerTest, GrowsByGradientPlusSquareRootWhenLatencyIsAtTheBaseline) {
  GradientController c(16);
  c.update({.ratio = 0.8}, 1, 1000);  // gradient 1.25
  EXPECT_DOUBLE_EQ(c.limit(), 16 * 1.25 + 4);
  EXPECT_DOUBLE_EQ(c.gradient(), 1.25);
  c.update({.ratio = 0.1}, 1, 1000);  // clamped to 2
  EXPECT_DOUBLE_EQ(c.gradient(), 2.0);
}

TEST(GradientControllerTest, AnAppLimitedWindowNeverGrowsTheLimit) {
  GradientController c(16);
  c.update({.ratio = 0.5, .app_limited = true}, 1, 1000);
  EXPECT_DOUBLE_EQ(c.limit(), 16);
}

TEST(GradientControllerTest, DecreasesAreSmoothedAndClampedAtHalf) {
  GradientController c(100);
  c.update({.ratio = 2.0}, 1, 1000);  // gradient 0.5: 0.8 x 100 + 0.2 x 50
  EXPECT_DOUBLE_EQ(c.limit(), 90);
  c.update({.ratio = 10.0}, 1, 1000);  // still 0.5 at worst
  EXPECT_DOUBLE_EQ(c.limit(), 81);
  // The gradient of an app-limited window still counts on the way down.
  c.update({.ratio = 2.0, .app_limited = true}, 1, 1000);
  EXPECT_DOUBLE_EQ(c.limit(), 72.9);
}

TEST(GradientControllerTest, ADropCutsByTenPercentWhateverTheLatency) {
  GradientController c(50);
  c.update({.ratio = 0.5, .dropped = true}, 1, 1000);
  EXPECT_DOUBLE_EQ(c.limit(), 45);
  EXPECT_DOUBLE_EQ(c.gradient(), 0.9);
}

TEST(GradientControllerTest, StaysWithinFloorAndCeiling) {
  GradientController c(4);
  for (int i = 0; i < 50; ++i) c.update({.ratio = 3.0}, 3, 20);
  EXPECT_DOUBLE_EQ(c.limit(), 3);
  for (int i = 0; i < 50; ++i) c.update({.ratio = 0.5}, 3, 20);
  EXPECT_DOUBLE_EQ(c.limit(), 20);
}

TEST(GradientControllerTest, NoDecreaseWhileALoopBlockerIsCappedInstead) {
  GradientController c(30);
  c.update({.ratio = 3.0, .may_decrease = false}, 1, 1000);
  EXPECT_DOUBLE_EQ(c.limit(), 30);
  c.update({.ratio = 3.0, .dropped = true, .may_decrease = false}, 1, 1000);
  EXPECT_DOUBLE_EQ(c.limit(), 27);  // drops still count
}

// ---------------------------------------------------------------------------------------------
// RouteLatency

TEST(RouteLatencyTest, AWindowClosesAfter100MsAndTenSamples) {
  RouteLatency l;
  for (int i = 0; i < 9; ++i) EXPECT_FALSE(l.add("e", 1000, SampleOutcome::Ok, 1000 + i * 50));
  EXPECT_TRUE(l.add("e", 1000, SampleOutcome::Ok, 1500));  // 10th sample, 500 ms old
  RouteLatency m;
  for (int i = 0; i < 30; ++i) EXPECT_FALSE(m.add("e", 1000, SampleOutcome::Ok, 1000));
  EXPECT_TRUE(m.add("e", 1000, SampleOutcome::Ok, 1100));
  EXPECT_EQ(m.lastWindow().samples, 31u);
}

TEST(RouteLatencyTest, PercentilesPerRouteAndMediansPerEndpoint) {
  RouteLatency l;
  for (int i = 1; i <= 10; ++i) (void)l.add("a", i * 1000, SampleOutcome::Ok, 1000);
  for (int i = 1; i <= 10; ++i) (void)l.add("b", 50'000, SampleOutcome::Ok, 1000);
  (void)l.add("b", 0, SampleOutcome::Drop, 1000);
  ASSERT_TRUE(l.add("a", 10'000, SampleOutcome::Ok, 1200));
  const LatencyWindow& w = l.lastWindow();
  EXPECT_EQ(w.samples, 21u);
  EXPECT_EQ(w.drops, 1u);
  EXPECT_EQ(w.p10_us, 3000);
  EXPECT_EQ(w.p50_us, 10'000);
  EXPECT_EQ(w.p90_us, 50'000);
  ASSERT_EQ(w.endpoints.size(), 2u);
  EXPECT_EQ(w.endpoints[0].endpoint, "a");
  EXPECT_EQ(w.endpoints[0].samples, 11u);
  EXPECT_EQ(w.endpoints[0].p50_us, 6000);
  EXPECT_EQ(w.endpoints[1].drops, 1u);
  EXPECT_EQ(w.endpoints[1].p50_us, 50'000);
  EXPECT_DOUBLE_EQ(*l.p50Ms(), 10.0);
}

TEST(RouteLatencyTest, MemoryStaysBoundedAtAnyRate) {
  RouteLatency l;
  for (int i = 0; i < 100'000; ++i) (void)l.add("e", 1000 + i % 100, SampleOutcome::Ok, 1000);
  ASSERT_TRUE(l.add("e", 1050, SampleOutcome::Ok, 1100));
  EXPECT_EQ(l.lastWindow().samples, 100'001u);
  EXPECT_NEAR(l.lastWindow().p50_us, 1050, 10);  // from the 512-sample reservoir
}

// ---------------------------------------------------------------------------------------------
// AdaptiveLimit, fed windows directly

class AdaptiveLimitTest : public WaiterFixture {
 protected:
  // One closed window of `route`: n samples of `p50_us` on endpoint `endpoint`.
  LatencyWindow window(double p50_us, uint64_t n = 20, const std::string& endpoint = "e1",
                       uint64_t drops = 0) {
    clock_.now_ += 100;
    LatencyWindow w;
    w.closed_at = clock_.now_;
    w.samples = n;
    w.drops = drops;
    w.p10_us = p50_us;
    w.p50_us = p50_us;
    w.p90_us = p50_us;
    w.endpoints.push_back({endpoint, n, drops, p50_us});
    return w;
  }
  // An auto route of `a`, its limiter on the routes' clock rc_.
  std::shared_ptr<Limiter> route(AdaptiveLimit& a, const std::string& name,
                                 const config::RouteLimits& limits = autoLimits()) {
    auto limiter = std::make_shared<Limiter>(limits, rc_, &a);
    a.addRoute(name, limiter, limits);
    return limiter;
  }
  // Feeds `w` while every unit of the limit is taken (the window was not app-limited).
  void busyWindow(AdaptiveLimit& a, std::string_view route, const LatencyWindow& w) {
    const uint64_t n = a.limit();
    for (uint64_t k = 0; k < n; ++k) ASSERT_TRUE(a.tryTake());
    a.onRouteWindow(route, w);
    for (uint64_t k = 0; k < n; ++k) a.giveBack();
  }

  FakeClock rc_;  // the route limiters' clock
};

TEST_F(AdaptiveLimitTest, StartsAtTheInitialLimitWithinTheRoutesBounds) {
  AdaptiveLimit a("app", clock_);
  EXPECT_EQ(a.limit(), 10u);
  auto r = route(a, "r", autoLimits(20, 50));
  EXPECT_EQ(a.limit(), 20u);
}

TEST_F(AdaptiveLimitTest, AMixChangeBetweenAFastAndASlowRouteIsNotReadAsQueueing) {
  AdaptiveLimit a("app", clock_);
  auto fast = route(a, "fast");
  auto slow = route(a, "slow");
  // Baselines: 5 ms and 50 ms, in-flight high enough that growth is allowed.
  for (int i = 0; i < 3; ++i) {
    busyWindow(a, "fast", window(5'000, 90));
    busyWindow(a, "slow", window(50'000, 10));
  }
  const uint64_t before = a.limit();
  // Now 90% of the traffic is the slow route: every window's overall median is ~50 ms, ten
  // times the old one, but neither route got slower.
  for (int i = 0; i < 20; ++i) {
    a.onRouteWindow("fast", window(5'000, 10));
    a.onRouteWindow("slow", window(50'000, 90));
  }
  EXPECT_GE(a.limit(), before);
}

TEST_F(AdaptiveLimitTest, ARouteThatGotSlowerIsReadAsQueueing) {
  AdaptiveLimit a("app", clock_);
  auto r = route(a, "r");
  for (int i = 0; i < 3; ++i) a.onRouteWindow("r", window(5'000));
  const uint64_t before = a.limit();
  for (int i = 0; i < 10; ++i) {
    LatencyWindow w = window(50'000);
    w.p10_us = 40'000;
    a.onRouteWindow("r", w);
  }
  EXPECT_LT(a.limit(), before);
}

TEST_F(AdaptiveLimitTest, TheBaselineAgesOutSoAPermanentSlowdownIsReBaselined) {
  AdaptiveLimit a("app", clock_);
  auto r = route(a, "r", autoLimits(8, 1000));
  a.onRouteWindow("r", window(5'000));
  EXPECT_DOUBLE_EQ(*a.routes()[0].min_rtt_ms, 5.0);
  // 20% slower: within the tolerance, so the limit holds and only the ageing can re-baseline.
  for (int i = 0; i < 50; ++i) a.onRouteWindow("r", window(6'000));  // 5 s later
  EXPECT_DOUBLE_EQ(*a.routes()[0].min_rtt_ms, 5.0);
  clock_.now_ += AdaptiveLimit::kMinRttAgeMs;
  a.onRouteWindow("r", window(6'000));
  EXPECT_DOUBLE_EQ(*a.routes()[0].min_rtt_ms, 6.0);
}

TEST_F(AdaptiveLimitTest, AtTheFloorTheBaselineIsReSeededFromTheSamplesTakenThere) {
  AdaptiveLimit a("app", clock_);
  auto r = route(a, "r");
  a.onRouteWindow("r", window(1'000));  // one lucky window: 1 ms
  for (int i = 0; i < 40; ++i) a.onRouteWindow("r", window(20'000));
  EXPECT_EQ(a.limit(), 1u);
  // Not 30 s later but after kFloorWindows at the floor, the baseline is what the floor sees.
  EXPECT_DOUBLE_EQ(*a.routes()[0].min_rtt_ms, 20.0);
  for (int i = 0; i < 10; ++i) busyWindow(a, "r", window(20'000));
  EXPECT_GT(a.limit(), 1u);
}

TEST_F(AdaptiveLimitTest, DropsShrinkTheLimit) {
  AdaptiveLimit a("app", clock_);
  auto r = route(a, "r");
  a.onRouteWindow("r", window(10'000));
  const uint64_t before = a.limit();
  for (int i = 0; i < 5; ++i) a.onRouteWindow("r", window(10'000, 18, "e1", 2));
  EXPECT_EQ(a.limit(), static_cast<uint64_t>(std::llround(before * std::pow(0.9, 5))));
}

TEST_F(AdaptiveLimitTest, LowLoadNeverDriftsTheLimitUp) {
  AdaptiveLimit a("app", clock_);
  auto r = route(a, "r");
  // 600 windows (a minute) at the baseline with 2 in flight: the limit has no reason to grow.
  for (int i = 0; i < 600; ++i) {
    ASSERT_TRUE(a.tryTake());
    ASSERT_TRUE(a.tryTake());
    a.onRouteWindow("r", window(10'000));
    a.giveBack();
    a.giveBack();
  }
  EXPECT_EQ(a.limit(), 10u);
}

TEST_F(AdaptiveLimitTest, EachEndpointHasItsOwnLimitAndAnIdleOneLeavesTheSum) {
  AdaptiveLimit a("app", clock_);
  auto r = route(a, "r");
  for (int i = 0; i < 10; ++i) {
    LatencyWindow w = window(10'000, 20, "fast");
    w.endpoints.push_back({"slow", 20, 0, 40'000});  // queueing on this one
    busyWindow(a, "r", w);
  }
  std::vector<AdaptiveLimit::EndpointView> e = a.endpoints();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_GT(e[0].limit, 10);  // fast grew
  EXPECT_LT(e[1].limit, 10);  // slow shrank
  EXPECT_EQ(a.limit(), static_cast<uint64_t>(std::llround(e[0].limit + e[1].limit)));
  // "slow" leaves DNS: a minute later it no longer counts.
  for (int i = 0; i < 700; ++i) a.onRouteWindow("r", window(10'000, 20, "fast"));
  ASSERT_EQ(a.endpoints().size(), 1u);
  EXPECT_EQ(a.endpoints()[0].name, "fast");
}

TEST_F(AdaptiveLimitTest, RoutesShareOneLimitAndFreedUnitsGoToTheOldestWaiter) {
  AdaptiveLimit a("app", clock_);
  config::RouteLimits capped = autoLimits(1, 3);
  auto r1 = route(a, "r1");
  auto r2 = route(a, "r2", capped);
  ASSERT_EQ(a.limit(), 10u);
  for (int i = 0; i < 7; ++i) ASSERT_EQ(r1->admit(waiter("x")), Admission::Admitted);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(r2->admit(waiter("y")), Admission::Admitted);
  EXPECT_EQ(a.inFlight(), 10u);
  ASSERT_EQ(r1->admit(waiter("r1-first")), Admission::Queued);
  rc_.now_ += 1;
  ASSERT_EQ(r2->admit(waiter("r2-second")), Admission::Queued);
  rc_.now_ += 1;
  ASSERT_EQ(r1->admit(waiter("r1-third")), Admission::Queued);
  r2->release();  // an r2 unit frees: the oldest waiter of either route gets it
  EXPECT_TRUE(log_.empty());  // in a later step, not on the releaser's stack
  settleAll(rc_, {r1.get(), r2.get()});
  EXPECT_EQ(log_, (std::vector<std::string>{"r1-first:admitted"}));
  r1->release();
  settleAll(rc_, {r1.get(), r2.get()});
  EXPECT_EQ(log_.back(), "r2-second:admitted");
  r1->release();
  settleAll(rc_, {r1.get(), r2.get()});
  EXPECT_EQ(log_.back(), "r1-third:admitted");
  // r2 is at its own cap of 3: a unit of the shared limit cannot go to it.
  ASSERT_EQ(r2->admit(waiter("r2-capped")), Admission::Queued);
  r1->release();
  settleAll(rc_, {r1.get(), r2.get()});
  EXPECT_EQ(log_.back(), "r1-third:admitted");
  EXPECT_EQ(a.inFlight(), 9u);
  r2->release();
  settleAll(rc_, {r1.get(), r2.get()});
  EXPECT_EQ(log_.back(), "r2-capped:admitted");
}

TEST_F(AdaptiveLimitTest, RoomFromAnUpdateIsHandedOutByTheTimerNotFromTheSample) {
  AdaptiveLimit a("app", clock_);
  auto r = route(a, "r");
  for (int i = 0; i < 10; ++i) ASSERT_EQ(r->admit(waiter("in")), Admission::Admitted);
  ASSERT_EQ(r->admit(waiter("waiting")), Admission::Queued);
  a.onRouteWindow("r", window(10'000));
  a.onRouteWindow("r", window(10'000));  // gradient 1.25, 10 in flight: grows
  EXPECT_GT(a.limit(), 10u);
  EXPECT_TRUE(log_.empty());  // not from inside the window's caller
  ASSERT_TRUE(clock_.armed_.has_value());
  a.onTimer();
  settleAll(rc_, {r.get()});
  EXPECT_EQ(log_, (std::vector<std::string>{"waiting:admitted"}));
  for (int i = 0; i < 11; ++i) r->release();
}

TEST_F(AdaptiveLimitTest, AnInnerGateStaysTheHardCap) {
  FakeGate pool(2);
  AdaptiveLimit a("cpu", clock_, &pool);
  auto r = route(a, "r");
  EXPECT_EQ(r->admit(waiter("a")), Admission::Admitted);
  EXPECT_EQ(r->admit(waiter("b")), Admission::Admitted);
  EXPECT_EQ(r->admit(waiter("c")), Admission::Queued);  // limit 10, but 2 worker slots
  EXPECT_EQ(a.inFlight(), 2u);
  pool.pump_on_give_back_ = r.get();  // as the pool pumps its waiting limiters
  r->release();
  settleAll(rc_, {r.get()});
  EXPECT_EQ(log_, (std::vector<std::string>{"c:admitted"}));
  EXPECT_EQ(pool.free_, 0u);
  r->release();
  r->release();
  EXPECT_EQ(pool.free_, 2u);
  EXPECT_EQ(a.inFlight(), 0u);
}

TEST_F(AdaptiveLimitTest, APoolIsOneLimitWhateverWorkerSocketsTheSamplesName) {
  FakeGate pool(8);
  AdaptiveLimit a("cpu", clock_, &pool, /*per_endpoint=*/false);
  auto r = route(a, "r");
  LatencyWindow w = window(10'000, 10, "worker-0.sock");
  w.endpoints.push_back({"worker-1.sock", 10, 0, 10'000});
  a.onRouteWindow("r", w);
  a.onRouteWindow("r", window(10'000, 20, "worker-2.sock"));  // a recycled worker
  ASSERT_EQ(a.endpoints().size(), 1u);
  EXPECT_EQ(a.endpoints()[0].name, "cpu");
}

class FakeOracle : public LoopBlockOracle {
 public:
  bool blocksLoop(std::string_view target, std::string_view route) const override {
    return target == "app" && route == blocker;
  }
  std::string blocker;
};

TEST_F(AdaptiveLimitTest, ALoopBlockerNamedByTheAdvisorGetsOnePerEndpointNotItsVictims) {
  AdaptiveLimit a("app", clock_);
  FakeOracle oracle;
  a.setLoopBlockOracle(&oracle);
  auto cpu = route(a, "cpu");
  auto io = route(a, "io");
  for (int i = 0; i < 3; ++i) a.onRouteWindow("io", window(5'000));
  const uint64_t before = a.limit();

  oracle.blocker = "cpu";
  a.onRouteWindow("io", window(5'000));  // the next update asks the advisor
  EXPECT_EQ(cpu->routeCap(), 1u);        // one endpoint: one at a time
  EXPECT_EQ(io->routeCap(), 1000u);
  EXPECT_EQ(cpu->admit(waiter("cpu1")), Admission::Admitted);
  EXPECT_EQ(cpu->admit(waiter("cpu2")), Admission::Queued);
  EXPECT_EQ(io->admit(waiter("io1")), Admission::Admitted);
  // The victims' latency triples (the blocker holds their loop), but their share is not cut.
  for (int i = 0; i < 20; ++i) a.onRouteWindow("io", window(15'000));
  EXPECT_GE(a.limit(), before);
  EXPECT_EQ(a.routes()[0].blocks_loop, true);

  oracle.blocker.clear();  // offloaded, say: the cap goes, and the waiter is let in
  a.onRouteWindow("io", window(5'000));
  EXPECT_EQ(cpu->routeCap(), 1000u);
  ASSERT_TRUE(clock_.armed_.has_value());
  a.onTimer();
  settleAll(rc_, {cpu.get(), io.get()});
  EXPECT_EQ(log_, (std::vector<std::string>{"cpu2:admitted"}));
  cpu->release();
  cpu->release();
  io->release();
}

// ---------------------------------------------------------------------------------------------
// The whole loop against simulated apps (100 ms limit samples)

// A single-threaded CPU handler (one at a time, 20 ms) offered twice its capacity: the limit
// settles low, the app keeps serving at capacity, and what is served is served fast.
TEST(AdaptiveLoopTest, CpuBoundAppAtTwiceItsCapacity) {
  OverloadSim s({.capacity = 1, .service_us = 20'000}, autoLimits(), 100);
  s.runFor(5'000);
  s.resetCounts();
  s.runFor(30'000);
  const size_t steady = 50;  // after the first 5 s
  EXPECT_LE(maxOf(s.limits(), steady), 4u);
  EXPECT_GE(s.served(), 0.95 * 50 * 30);  // the app never idles
  EXPECT_LT(percentile(s.servedMs(), 0.99), 250);
}

// A DB pool of 4 (20 ms each) offered twice its capacity: the limit converges near the pool
// size, never collapses to the floor, and oscillates within bounds.
TEST(AdaptiveLoopTest, DbPoolOfFourAtTwiceItsCapacity) {
  OverloadSim s({.capacity = 4, .service_us = 20'000}, autoLimits(), 400);
  s.runFor(5'000);
  s.resetCounts();
  s.runFor(60'000);
  const size_t steady = 50;
  EXPECT_GE(minOf(s.limits(), steady), 3u) << "collapsed toward the floor";
  EXPECT_LE(maxOf(s.limits(), steady), 12u);
  EXPECT_GE(mean(s.limits(), steady), 4.0);
  EXPECT_LE(mean(s.limits(), steady), 8.0);
  EXPECT_GE(s.served(), 0.95 * 200 * 60);
  EXPECT_LT(percentile(s.servedMs(), 0.50), 60);  // 3x the service time
}

// An app with much more concurrency than the initial limit grows to it quickly.
TEST(AdaptiveLoopTest, ConvergesUpToAWideAppWithinSeconds) {
  OverloadSim s({.capacity = 64, .service_us = 20'000}, autoLimits(), 6400);
  s.runFor(3'000);
  EXPECT_GE(s.limits().back(), 64u);
  s.resetCounts();
  s.runFor(10'000);
  EXPECT_GE(minOf(s.limits(), 30), 50u);
  EXPECT_LE(maxOf(s.limits(), 30), 200u);
  EXPECT_GE(s.served(), 0.9 * 3200 * 10);
}

// No work to speak of: the limit stays where it is (no upward drift), nothing is refused.
TEST(AdaptiveLoopTest, LightLoadNeitherDriftsNorRefuses) {
  OverloadSim s({.capacity = 4, .service_us = 20'000}, autoLimits(), 50);
  s.runFor(60'000);
  EXPECT_LE(maxOf(s.limits()), 10u);
  EXPECT_EQ(s.refused(), 0u);
}

// The app slows down for good (20 -> 80 ms), then gets fast again: the limit re-baselines
// instead of throttling at half the capacity forever, and recovers when latency falls.
TEST(AdaptiveLoopTest, RecoversWhenLatencyRisesForGoodAndWhenItFallsAgain) {
  OverloadSim s({.capacity = 4, .service_us = 20'000}, autoLimits(), 400);
  s.runFor(10'000);
  s.setApp({.capacity = 4, .service_us = 80'000});  // capacity 50/s
  s.runFor(AdaptiveLimit::kMinRttAgeMs + 5'000);
  s.resetCounts();
  s.runFor(10'000);
  EXPECT_GE(s.served(), 0.9 * 50 * 10) << "still throttled by the old baseline";
  s.setApp({.capacity = 4, .service_us = 20'000});
  s.runFor(3'000);
  s.resetCounts();
  s.runFor(10'000);
  EXPECT_GE(s.served(), 0.95 * 200 * 10) << "did not recover when latency fell";
  size_t n = s.limits().size();
  EXPECT_GE(minOf(s.limits(), n - 100), 3u);
  EXPECT_LE(maxOf(s.limits(), n - 100), 12u);
}

// Overload that goes away: the limit grows back to where it is no constraint, and nothing is
// refused any more.
TEST(AdaptiveLoopTest, LoadThatDropsBackIsServedWithoutRefusals) {
  OverloadSim s({.capacity = 4, .service_us = 20'000}, autoLimits(), 400);
  s.runFor(10'000);
  const uint64_t overloaded = s.limits().back();
  s.setRate(150);
  s.runFor(2'000);
  s.resetCounts();
  s.runFor(20'000);
  EXPECT_EQ(s.refused(), 0u);
  EXPECT_GE(s.served(), 150u * 20 - 2);
  EXPECT_GE(s.limits().back(), overloaded);
  EXPECT_GE(s.limits().back(), 2 * maxOf(s.inApp(), s.inApp().size() - 200) / 2);
  EXPECT_LT(percentile(s.servedMs(), 0.99), 60);
}

// Fixed limits and FIFO, for contrast: the same CPU app at twice its capacity with the naive
// bounds serves every request late (the measurement: p50 10 s).
TEST(AdaptiveLoopTest, TheNaiveFifoConfigServesEverythingLate) {
  config::RouteLimits naive;
  naive.max_in_flight = 2;
  naive.max_queue = 10000;
  naive.queue_timeout = milliseconds(30'000);
  OverloadSim s({.capacity = 1, .service_us = 20'000}, naive, 100);
  s.runFor(20'000);
  EXPECT_GT(percentile(s.servedMs(), 0.50), 3'000);
}

}  // namespace
}  // namespace loopguard::routing
