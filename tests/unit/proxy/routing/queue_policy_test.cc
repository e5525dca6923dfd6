// Queue order (fifo | lifo | adaptive) and CoDel-style early refusal, through the Limiter that
// uses the policy, on a fake clock.
#include "proxy/routing/queue_policy.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "proxy/routing/limiter.h"
#include "tests/unit/support/limiter_test_support.h"

namespace loopguard::routing {
namespace {

using config::QueueOrder;

config::RouteLimits ordered(QueueOrder order, uint64_t max_in_flight, uint64_t max_queue,
                            milliseconds queue_timeout = milliseconds(30'000)) {
  config::RouteLimits limits = makeLimits(max_in_flight, max_queue, queue_timeout);
  limits.queue_order = order;
  return limits;
}

class QueueOrderTest : public WaiterFixture {
 protected:
  void queue(Limiter& limiter, const std::vector<std::string>& names) {
    for (const std::string& n : names) ASSERT_EQ(limiter.admit(waiter(n)), Admission::Queued) << n;
  }
  // Moves the clock to the armed deadline and fires the timer, as the loop would.
  void fire(Limiter& limiter) {
    ASSERT_TRUE(clock_.armed_.has_value());
    clock_.now_ = std::max(clock_.now_, *clock_.armed_);
    limiter.onTimer();
  }
};

TEST_F(QueueOrderTest, LifoServesTheNewestFirst) {
  Limiter limiter(ordered(QueueOrder::Lifo, 1, 10), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b", "c", "d"});
  limiter.release();
  limiter.release();
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"d:admitted", "c:admitted", "b:admitted"}));
  // The oldest waiter still decides which route a shared capacity serves first.
  EXPECT_EQ(limiter.oldestEnqueuedAt(), std::nullopt);
}

TEST_F(QueueOrderTest, LifoFullQueueEvictsTheOldestAtOnceInsteadOfRefusingTheNewcomer) {
  Limiter limiter(ordered(QueueOrder::Lifo, 1, 2), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b", "c"});
  clock_.now_ += 7;
  EXPECT_EQ(limiter.admit(waiter("d")), Admission::Queued);
  // b is answered in the step after d's admission (not on its stack), not at its queue_timeout.
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:evicted"}));
  EXPECT_EQ(limiter.stats().queue_depth, 2u);
  EXPECT_EQ(limiter.stats().rejected_queue_evicted, 1u);
  EXPECT_EQ(limiter.stats().rejected_queue_full, 0u);
  EXPECT_EQ(limiter.oldestEnqueuedAt(), 1000u);  // c
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_.back(), "d:admitted");
  drain(limiter);
}

TEST_F(QueueOrderTest, FifoFullQueueRefusesTheNewcomer) {
  Limiter limiter(ordered(QueueOrder::Fifo, 1, 2), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b", "c"});
  EXPECT_EQ(limiter.admit(waiter("d")), Admission::QueueFull);
  settle(limiter);
  EXPECT_TRUE(log_.empty());
  EXPECT_EQ(limiter.stats().rejected_queue_evicted, 0u);
  drain(limiter);
}

TEST_F(QueueOrderTest, MaxQueueZeroNeverEvictsEvenInLifo) {
  Limiter limiter(ordered(QueueOrder::Lifo, 1, 0), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  EXPECT_EQ(limiter.admit(waiter("b")), Admission::QueueFull);
}

TEST_F(QueueOrderTest, AnEvictedWaitersCallbackMayQueueAnotherRequest) {
  Limiter limiter(ordered(QueueOrder::Lifo, 1, 2), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b", "c"});
  TestWaiter& again = waiter("e");
  Admission nested = Admission::Admitted;
  waiters_[1].on_evicted_ = [&] { nested = limiter.admit(again); };  // b's client retries
  EXPECT_EQ(limiter.admit(waiter("d")), Admission::Queued);
  EXPECT_TRUE(log_.empty());  // b hears in a later step, not on d's stack
  settle(limiter);
  // e came in while d was already queued: the queue stays at max_queue by evicting c too.
  EXPECT_EQ(nested, Admission::Queued);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:evicted", "c:evicted"}));
  EXPECT_EQ(limiter.stats().queue_depth, 2u);
  limiter.release();
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:evicted", "c:evicted", "e:admitted", "d:admitted"}));
}

TEST_F(QueueOrderTest, LifoStillRefusesAtQueueTimeout) {
  Limiter limiter(ordered(QueueOrder::Lifo, 1, 10, milliseconds(300)), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b"});
  EXPECT_EQ(clock_.armed_, 1300u);
  fire(limiter);
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:timeout"}));
  EXPECT_EQ(limiter.stats().early_refusals, 0u);
}

TEST_F(QueueOrderTest, AdaptiveIsFifoWhileTheQueueDrains) {
  Limiter limiter(ordered(QueueOrder::Adaptive, 1, 100), clock_);
  limiter.setServiceTime(10, 10);  // target 20 ms, interval 100 ms
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b", "c"});
  clock_.now_ += 50;  // not empty for 50 ms only: no standing queue
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:admitted"}));
  EXPECT_FALSE(limiter.policy().lifoNow());
  EXPECT_EQ(limiter.policy().lifoSwitches(), 0u);
  drain(limiter);
}

TEST_F(QueueOrderTest, AdaptiveTurnsLifoOnceAQueueStandsAndFifoAgainWhenItEmpties) {
  Limiter limiter(ordered(QueueOrder::Adaptive, 1, 100), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);  // no service time: no refusal
  queue(limiter, {"b", "c", "d"});
  clock_.now_ += 100;  // the default interval
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"d:admitted"}));
  EXPECT_TRUE(limiter.policy().lifoNow());
  limiter.release();
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_.back(), "b:admitted");
  EXPECT_EQ(limiter.policy().lifoSwitches(), 1u);
  EXPECT_FALSE(limiter.policy().lifoNow());  // empty: draining order again
  queue(limiter, {"e", "f"});
  clock_.now_ += 99;
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_.back(), "e:admitted");
  drain(limiter);
}

TEST_F(QueueOrderTest, AdaptiveTurnsLifoWhenTheQueueIsNearlyFullBeforeItStands) {
  Limiter limiter(ordered(QueueOrder::Adaptive, 1, 10), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b", "c", "d", "e", "f", "g", "h", "i", "j"});  // 9 > 0.8 x 10
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"j:admitted"}));
  limiter.release();  // 8 left: not above 80%, and not standing yet
  settle(limiter);
  EXPECT_EQ(log_.back(), "b:admitted");
  drain(limiter);
}

TEST_F(QueueOrderTest, AdaptiveFullQueueEvictsTheOldest) {
  Limiter limiter(ordered(QueueOrder::Adaptive, 1, 2), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b", "c"});
  EXPECT_EQ(limiter.admit(waiter("d")), Admission::Queued);
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:evicted"}));
  drain(limiter);
}

// CoDel timing: once the queue has not been empty for `interval`, a waiter may wait `target`;
// whoever is past it then is refused at that very moment, later ones at enqueue + target.
TEST_F(QueueOrderTest, AdaptiveRefusesPastTheTargetOnceTheQueueStands) {
  Limiter limiter(ordered(QueueOrder::Adaptive, 1, 100), clock_);
  limiter.setServiceTime(10, 20);  // target max(5, 2 x 10) = 20 ms, interval max(100, 80) = 100
  EXPECT_EQ(limiter.policy().targetMs(), 20u);
  EXPECT_EQ(limiter.policy().intervalMs(), 100u);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"w1"});           // t = 1000
  EXPECT_EQ(clock_.armed_, 1100u);  // when the queue will stand, not w1's 30 s timeout
  clock_.now_ = 1090;
  queue(limiter, {"w2"});
  EXPECT_EQ(clock_.armed_, 1100u);

  fire(limiter);  // t = 1100: standing; w1 waited 100 > 20 ms
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"w1:timeout"}));
  EXPECT_EQ(clock_.armed_, 1110u);  // w2: 1090 + 20
  clock_.now_ = 1105;
  queue(limiter, {"w3"});
  EXPECT_EQ(clock_.armed_, 1110u);

  fire(limiter);
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"w1:timeout", "w2:timeout"}));
  EXPECT_EQ(clock_.armed_, 1125u);
  // A slot frees first: the newest (w3) gets it, and the queue is empty again.
  clock_.now_ = 1120;
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_.back(), "w3:admitted");
  EXPECT_FALSE(clock_.armed_.has_value());
  EXPECT_EQ(limiter.stats().rejected_queue_timeout, 2u);
  EXPECT_EQ(limiter.stats().early_refusals, 2u);
}

TEST_F(QueueOrderTest, AdaptiveWithoutAServiceTimeRefusesOnlyAtQueueTimeout) {
  Limiter limiter(ordered(QueueOrder::Adaptive, 1, 100, milliseconds(2000)), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b"});
  EXPECT_EQ(clock_.armed_, 3000u);
  fire(limiter);
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:timeout"}));
  EXPECT_EQ(limiter.stats().early_refusals, 0u);
}

TEST_F(QueueOrderTest, QueueTimeoutStaysTheCapBelowTheTarget) {
  Limiter limiter(ordered(QueueOrder::Adaptive, 1, 100, milliseconds(50)), clock_);
  limiter.setServiceTime(100, 100);  // target 200 ms > queue_timeout
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b"});
  EXPECT_EQ(clock_.armed_, 1050u);
  fire(limiter);
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:timeout"}));
  EXPECT_EQ(limiter.stats().early_refusals, 0u);
}

TEST_F(QueueOrderTest, TargetAndIntervalScaleWithTheServiceTime) {
  QueuePolicy p(QueueOrder::Adaptive);
  EXPECT_FALSE(p.hasServiceTime());
  EXPECT_EQ(p.targetMs(), 5u);
  EXPECT_EQ(p.intervalMs(), 100u);
  p.setServiceTime(1, 2);  // a millisecond RPC: Facebook's floors
  EXPECT_EQ(p.targetMs(), 5u);
  EXPECT_EQ(p.intervalMs(), 100u);
  p.setServiceTime(200, 400);  // a 200 ms Python handler
  EXPECT_EQ(p.targetMs(), 400u);
  EXPECT_EQ(p.intervalMs(), 1600u);
}

TEST_F(QueueOrderTest, ReloadChangesTheOrderOfTheQueueInPlace) {
  Limiter limiter(ordered(QueueOrder::Fifo, 1, 10), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  queue(limiter, {"b", "c"});
  limiter.reconfigure(ordered(QueueOrder::Lifo, 1, 10), nullptr);
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"c:admitted"}));
  limiter.reconfigure(ordered(QueueOrder::Fifo, 1, 10), nullptr);
  queue(limiter, {"d"});
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_.back(), "b:admitted");
  drain(limiter);
}

}  // namespace
}  // namespace loopguard::routing
