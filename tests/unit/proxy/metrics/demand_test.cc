// loopguard_route_demand_seconds_total: the integral of (in flight + queued) over the limiter's
// clock, checked against integrals computed by hand on a fake clock.
#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "proxy/metrics/demand.h"
#include "proxy/routing/limiter.h"

namespace loopguard::routing {
namespace {

using metrics::DemandIntegrator;
using std::chrono::milliseconds;

TEST(DemandIntegrator, IntegratesAPiecewiseConstantLevel) {
  DemandIntegrator d;
  d.update(1000, 2);  // 2 from t=1000
  d.update(1500, 5);  // 2 x 500 ms
  d.update(1500, 3);  // two changes at the same instant add nothing
  d.update(2000, 0);  // 3 x 500 ms
  EXPECT_EQ(d.requestMilliseconds(2000), 2 * 500 + 3 * 500u);
  EXPECT_EQ(d.requestMilliseconds(9000), 2500u);  // level 0 adds nothing
  d.update(9000, 1);
  EXPECT_EQ(d.requestMilliseconds(9250), 2750u);  // the open interval counts up to the reading
  EXPECT_DOUBLE_EQ(d.requestSeconds(9250), 2.75);
  EXPECT_EQ(d.level(), 1u);
}

TEST(DemandIntegrator, AClockThatStepsBackAddsNothingAndNeverUnderflows) {
  DemandIntegrator d;
  d.update(5000, 4);
  d.update(4000, 1);  // earlier than the last change: no time passed
  EXPECT_EQ(d.requestMilliseconds(4500), 0u);
  EXPECT_EQ(d.requestMilliseconds(6000), 1000u);  // level 1 from 5000
}

TEST(DemandIntegrator, RateOverAnyWindowIsTheAverageLevel) {
  // Little's law check: random arrivals and departures, read every millisecond as a scrape
  // would; the increase over any window equals the sum of the level over that window (so the
  // increase divided by the window is the time-average demand).
  std::mt19937 rng(7);
  DemandIntegrator d;
  constexpr uint64_t kEnd = 20'000;
  std::vector<uint64_t> level_at(kEnd, 0);
  std::vector<uint64_t> reading(kEnd + 1, 0);
  uint64_t level = 0;
  for (uint64_t t = 0; t < kEnd; ++t) {
    reading[t] = d.requestMilliseconds(t);
    if (rng() % 10 == 0) {
      if (rng() % 2 == 0 || level == 0) {
        ++level;
      } else {
        --level;
      }
      d.update(t, level);
    }
    level_at[t] = level;
  }
  reading[kEnd] = d.requestMilliseconds(kEnd);
  for (auto [from, to] : {std::pair<uint64_t, uint64_t>{0, kEnd}, {1234, 5678}, {9000, 9001}}) {
    uint64_t sum = 0;
    for (uint64_t t = from; t < to; ++t) sum += level_at[t];
    EXPECT_GT(sum, 0u);
    EXPECT_EQ(reading[to] - reading[from], sum) << from << ".." << to;
  }
}

class FakeClock : public LimiterClock {
 public:
  TimePointMs now() const override { return now_; }
  void arm(TimePointMs deadline) override { armed_ = deadline; }
  void disarm() override { armed_.reset(); }
  void post() override { posted_ = true; }
  // Runs the later step the limiter asked for (the loop's ready queue in the proxy).
  void settle(Limiter& limiter) {
    while (std::exchange(posted_, false)) limiter.deliver();
  }
  TimePointMs now_ = 10'000;
  bool posted_ = false;
  std::optional<TimePointMs> armed_;
};

class Waiter : public LimiterWaiter {
 public:
  void onAdmitted() override { admitted = true; }
  void onQueueTimeout() override { timed_out = true; }
  void onEvicted() override { timed_out = true; }
  bool admitted = false;
  bool timed_out = false;
};

config::RouteLimits limits(uint64_t in_flight, uint64_t queue, int64_t timeout_ms) {
  config::RouteLimits l;
  l.max_in_flight = in_flight;
  l.max_queue = queue;
  l.queue_timeout = milliseconds(timeout_ms);
  return l;
}

TEST(LimiterDemand, CountsInFlightAndQueuedOnTheLimitersClock) {
  FakeClock clock;
  Limiter limiter(limits(1, 2, 1000), clock);
  Waiter a, b, c, d;
  ASSERT_EQ(limiter.admit(a), Admission::Admitted);  // t=10000: demand 1
  clock.now_ += 100;
  ASSERT_EQ(limiter.admit(b), Admission::Queued);  // t=10100: 2
  clock.now_ += 100;
  ASSERT_EQ(limiter.admit(c), Admission::Queued);  // t=10200: 3
  ASSERT_EQ(limiter.admit(d), Admission::QueueFull);  // refused: nothing held, demand stays 3
  clock.now_ += 300;
  limiter.release();  // t=10500: a done, b admitted from the queue: 2
  clock.settle(limiter);
  EXPECT_TRUE(b.admitted);
  clock.now_ += 200;
  limiter.cancel(c);  // t=10700: c's client went away: 1
  clock.now_ += 50;
  // 1x100 + 2x100 + 3x300 + 2x200 + 1x50 (b still in flight)
  EXPECT_EQ(limiter.demandMilliseconds(), 100u + 200 + 900 + 400 + 50);
  limiter.release();  // t=10750: 0
  clock.now_ += 5000;
  EXPECT_EQ(limiter.demandMilliseconds(), 1650u);
}

TEST(LimiterDemand, AQueueTimeoutEndsTheWaitersDemand) {
  FakeClock clock;
  Limiter limiter(limits(1, 4, 250), clock);
  Waiter a, b;
  ASSERT_EQ(limiter.admit(a), Admission::Admitted);
  ASSERT_EQ(limiter.admit(b), Admission::Queued);  // demand 2 from t=10000
  clock.now_ += 250;
  limiter.onTimer();  // b times out at 10250
  clock.settle(limiter);
  EXPECT_TRUE(b.timed_out);
  clock.now_ += 750;  // a alone until 11000
  EXPECT_EQ(limiter.demandMilliseconds(), 2u * 250 + 1 * 750);
}

TEST(LimiterDemand, WaitingForAPoolWorkerCountsAsDemand) {
  // A gated limiter without max_in_flight: requests wait for a worker slot, and that wait is
  // demand the pool does not meet (what an autoscaler must see).
  class Gate : public CapacityGate {
   public:
    bool tryTake() override { return free > 0 ? (--free, true) : false; }
    void giveBack() override { ++free; }
    bool hasCapacity() const override { return free > 0; }
    uint64_t free = 1;
  } gate;
  FakeClock clock;
  config::RouteLimits l;
  l.max_queue = 10;
  l.queue_timeout = milliseconds(10'000);
  Limiter limiter(l, clock, &gate);
  Waiter w[3];
  ASSERT_EQ(limiter.admit(w[0]), Admission::Admitted);
  ASSERT_EQ(limiter.admit(w[1]), Admission::Queued);
  ASSERT_EQ(limiter.admit(w[2]), Admission::Queued);
  clock.now_ += 1000;
  EXPECT_EQ(limiter.demandMilliseconds(), 3000u);
  limiter.failAllQueued();  // the pool has no workers left: both refused
  clock.settle(limiter);
  clock.now_ += 1000;
  EXPECT_EQ(limiter.demandMilliseconds(), 4000u);
}

TEST(LimiterDemand, SurvivesAReconfigure) {
  FakeClock clock;
  Limiter limiter(limits(1, 1, 1000), clock);
  Waiter a;
  ASSERT_EQ(limiter.admit(a), Admission::Admitted);
  clock.now_ += 400;
  limiter.reconfigure(limits(8, 8, 1000), nullptr);
  clock.now_ += 600;
  EXPECT_EQ(limiter.demandMilliseconds(), 1000u);
  limiter.release();
}

}  // namespace
}  // namespace loopguard::routing
