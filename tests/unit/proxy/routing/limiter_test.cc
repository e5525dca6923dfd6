#include "proxy/routing/limiter.h"
#include "tests/unit/support/limiter_test_support.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace loopguard::routing {
namespace {

using std::chrono::milliseconds;

class LimiterTest : public WaiterFixture {};

TEST_F(LimiterTest, AdmitsUpToMaxInFlightThenQueuesThenRefuses) {
  Limiter limiter(makeLimits(2, 2), clock_);
  EXPECT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  EXPECT_EQ(limiter.admit(waiter("b")), Admission::Admitted);
  EXPECT_EQ(limiter.admit(waiter("c")), Admission::Queued);
  EXPECT_EQ(limiter.admit(waiter("d")), Admission::Queued);
  EXPECT_EQ(limiter.admit(waiter("e")), Admission::QueueFull);

  EXPECT_EQ(limiter.stats().in_flight, 2u);
  EXPECT_EQ(limiter.stats().queue_depth, 2u);
  EXPECT_EQ(limiter.stats().rejected_queue_full, 1u);
  EXPECT_EQ(limiter.stats().rejected_queue_timeout, 0u);
  settle(limiter);
  EXPECT_TRUE(log_.empty());  // Admitted and QueueFull get no callback
  EXPECT_EQ(clock_.armed_, 1000u + 5000u);
  drain(limiter);
}

TEST_F(LimiterTest, TenArrivalsTwoInFlightThreeQueued) {
  Limiter limiter(makeLimits(2, 3), clock_);
  int admitted = 0, queued = 0, full = 0;
  for (int i = 0; i < 10; ++i) {
    switch (limiter.admit(waiter("w" + std::to_string(i)))) {
      case Admission::Admitted:
        ++admitted;
        break;
      case Admission::Queued:
        ++queued;
        break;
      case Admission::QueueFull:
        ++full;
        break;
    }
  }
  EXPECT_EQ(admitted, 2);
  EXPECT_EQ(queued, 3);
  EXPECT_EQ(full, 5);
  EXPECT_EQ(limiter.stats().in_flight, 2u);
  EXPECT_EQ(limiter.stats().queue_depth, 3u);
  EXPECT_EQ(limiter.stats().rejected_queue_full, 5u);
  drain(limiter);
}

TEST_F(LimiterTest, UnlimitedWithoutGateAlwaysAdmits) {
  Limiter limiter(makeLimits(std::nullopt, 0), clock_);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(limiter.admit(waiter("w")), Admission::Admitted);
  EXPECT_EQ(limiter.stats().in_flight, 100u);
}

TEST_F(LimiterTest, MaxQueueZeroRefusesAtOnce) {
  Limiter limiter(makeLimits(1, 0), clock_);
  EXPECT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  EXPECT_EQ(limiter.admit(waiter("b")), Admission::QueueFull);
  EXPECT_EQ(limiter.stats().queue_depth, 0u);
  EXPECT_EQ(clock_.arm_calls_, 0);
}

TEST_F(LimiterTest, ReleaseAdmitsInFifoOrder) {
  Limiter limiter(makeLimits(1, 10), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  for (const char* name : {"b", "c", "d"})
    ASSERT_EQ(limiter.admit(waiter(name)), Admission::Queued);
  EXPECT_EQ(limiter.oldestEnqueuedAt(), 1000u);

  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:admitted"}));
  EXPECT_EQ(limiter.stats().in_flight, 1u);
  EXPECT_EQ(limiter.stats().queue_depth, 2u);

  limiter.release();
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:admitted", "c:admitted", "d:admitted"}));
  EXPECT_EQ(limiter.stats().queue_depth, 0u);
  EXPECT_EQ(limiter.oldestEnqueuedAt(), std::nullopt);
  EXPECT_FALSE(clock_.armed_.has_value());  // empty queue: no timer

  limiter.release();
  EXPECT_EQ(limiter.stats().in_flight, 0u);
  settle(limiter);
  for (const TestWaiter& w : waiters_) EXPECT_LE(w.admitted_, 1);
}

TEST_F(LimiterTest, NewcomerNeverJumpsTheQueue) {
  FakeGate gate(0);
  Limiter limiter(makeLimits(std::nullopt, 10), clock_, &gate);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Queued);
  gate.free_ = 1;  // capacity appeared, but the owner has not pumped yet
  const int takes = gate.take_calls_;
  EXPECT_EQ(limiter.admit(waiter("b")), Admission::Queued);
  EXPECT_EQ(gate.take_calls_, takes);  // did not even try
  limiter.pump();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:admitted"}));
  drain(limiter);
}

TEST_F(LimiterTest, QueueTimeoutFiresOnlyForExpiredAndRearms) {
  Limiter limiter(makeLimits(1, 10, milliseconds(100)), clock_);
  ASSERT_EQ(limiter.admit(waiter("holder")), Admission::Admitted);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Queued);  // deadline 1100
  clock_.now_ = 1050;
  ASSERT_EQ(limiter.admit(waiter("b")), Admission::Queued);  // deadline 1150
  EXPECT_EQ(clock_.armed_, 1100u);
  EXPECT_EQ(clock_.arm_calls_, 1);  // a later deadline does not re-arm

  clock_.now_ = 1100;
  limiter.onTimer();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:timeout"}));
  EXPECT_EQ(limiter.stats().rejected_queue_timeout, 1u);
  EXPECT_EQ(limiter.stats().queue_depth, 1u);
  EXPECT_EQ(clock_.armed_, 1150u);

  clock_.now_ = 1149;
  limiter.onTimer();  // early tick: nothing expires, re-armed for the same deadline
  EXPECT_EQ(limiter.stats().queue_depth, 1u);
  EXPECT_EQ(clock_.armed_, 1150u);

  clock_.now_ = 1200;
  limiter.onTimer();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:timeout", "b:timeout"}));
  EXPECT_EQ(limiter.stats().rejected_queue_timeout, 2u);
  EXPECT_EQ(limiter.stats().queue_depth, 0u);
  EXPECT_FALSE(clock_.armed_.has_value());
  EXPECT_EQ(limiter.stats().in_flight, 1u);  // the holder is untouched
}

TEST_F(LimiterTest, QueueTimeoutScansWholeListAfterReload) {
  Limiter limiter(makeLimits(0, 10, milliseconds(1000)), clock_);
  ASSERT_EQ(limiter.admit(waiter("slow")), Admission::Queued);  // deadline 2000
  limiter.reconfigure(makeLimits(0, 10, milliseconds(100)), nullptr);
  ASSERT_EQ(limiter.admit(waiter("fast")), Admission::Queued);  // deadline 1100, behind "slow"
  EXPECT_EQ(clock_.armed_, 1100u);

  clock_.now_ = 1100;
  limiter.onTimer();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"fast:timeout"}));
  EXPECT_EQ(clock_.armed_, 2000u);
  clock_.now_ = 2000;
  limiter.onTimer();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"fast:timeout", "slow:timeout"}));
}

TEST_F(LimiterTest, CancelLeavesAtOnceAndOthersKeepOrder) {
  Limiter limiter(makeLimits(1, 10), clock_);
  ASSERT_EQ(limiter.admit(waiter("holder")), Admission::Admitted);
  TestWaiter& a = waiter("a");
  TestWaiter& b = waiter("b");
  TestWaiter& c = waiter("c");
  ASSERT_EQ(limiter.admit(a), Admission::Queued);
  ASSERT_EQ(limiter.admit(b), Admission::Queued);
  ASSERT_EQ(limiter.admit(c), Admission::Queued);

  limiter.cancel(b);
  EXPECT_EQ(limiter.stats().queue_depth, 2u);
  limiter.cancel(b);  // second cancel is a no-op
  EXPECT_EQ(limiter.stats().queue_depth, 2u);
  limiter.cancel(a);  // the head
  EXPECT_EQ(limiter.stats().queue_depth, 1u);
  settle(limiter);
  EXPECT_TRUE(log_.empty());  // no callback for a cancel
  EXPECT_EQ(limiter.stats().rejected_queue_timeout + limiter.stats().rejected_queue_full, 0u);
  EXPECT_TRUE(clock_.armed_.has_value());

  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"c:admitted"}));
  EXPECT_FALSE(clock_.armed_.has_value());
  EXPECT_EQ(b.admitted_ + b.timed_out_, 0);
}

TEST_F(LimiterTest, CancelOfLastWaiterDisarms) {
  Limiter limiter(makeLimits(0, 10), clock_);
  TestWaiter& a = waiter("a");
  ASSERT_EQ(limiter.admit(a), Admission::Queued);
  EXPECT_TRUE(clock_.armed_.has_value());
  limiter.cancel(a);
  EXPECT_FALSE(clock_.armed_.has_value());
  EXPECT_EQ(limiter.oldestEnqueuedAt(), std::nullopt);
  // Expired or not, a cancelled waiter never hears from the limiter again.
  clock_.now_ += 10'000;
  limiter.onTimer();
  settle(limiter);
  EXPECT_TRUE(log_.empty());
}

TEST_F(LimiterTest, CancelOnAnotherLimiterIsANoOp) {
  Limiter first(makeLimits(0, 10), clock_);
  FakeClock other_clock;
  Limiter second(makeLimits(0, 10), other_clock);
  TestWaiter& a = waiter("a");
  TestWaiter& b = waiter("b");
  ASSERT_EQ(first.admit(a), Admission::Queued);
  ASSERT_EQ(first.admit(b), Admission::Queued);
  second.cancel(a);
  EXPECT_EQ(first.stats().queue_depth, 2u);
  EXPECT_EQ(second.stats().queue_depth, 0u);
  drain(first);
}

TEST_F(LimiterTest, ReleaseBookkeepingIsExact) {
  Limiter limiter(makeLimits(3, 10), clock_);
  for (int i = 0; i < 5; ++i) (void)limiter.admit(waiter("w"));
  EXPECT_EQ(limiter.stats().in_flight, 3u);
  EXPECT_EQ(limiter.stats().queue_depth, 2u);
  for (int i = 0; i < 5; ++i) limiter.release();
  EXPECT_EQ(limiter.stats().in_flight, 0u);
  EXPECT_EQ(limiter.stats().queue_depth, 0u);
  int admitted = 0;
  settle(limiter);
  for (const TestWaiter& w : waiters_) admitted += w.admitted_;
  EXPECT_EQ(admitted, 2);
}

TEST_F(LimiterTest, ReconfigureRaisingLimitAdmitsQueued) {
  Limiter limiter(makeLimits(1, 10), clock_);
  for (const char* name : {"a", "b", "c", "d"}) (void)limiter.admit(waiter(name));
  limiter.reconfigure(makeLimits(3, 10), nullptr);
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:admitted", "c:admitted"}));
  EXPECT_EQ(limiter.stats().in_flight, 3u);
  EXPECT_EQ(limiter.stats().queue_depth, 1u);
  EXPECT_EQ(limiter.limits().max_in_flight, 3u);
  drain(limiter);
}

TEST_F(LimiterTest, ReconfigureLoweringLimitKeepsInFlight) {
  Limiter limiter(makeLimits(4, 10), clock_);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(limiter.admit(waiter("w")), Admission::Admitted);
  limiter.reconfigure(makeLimits(2, 10), nullptr);
  EXPECT_EQ(limiter.stats().in_flight, 4u);  // over the new max until they finish
  TestWaiter& late = waiter("late");
  EXPECT_EQ(limiter.admit(late), Admission::Queued);

  limiter.release();
  limiter.release();
  settle(limiter);
  EXPECT_EQ(late.admitted_, 0);  // still at the new max (2)
  limiter.release();
  settle(limiter);
  EXPECT_EQ(late.admitted_, 1);
  EXPECT_EQ(limiter.stats().in_flight, 2u);
}

TEST_F(LimiterTest, ReconfigureShrinkingQueueKeepsAcceptedWaiters) {
  Limiter limiter(makeLimits(0, 5), clock_);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(limiter.admit(waiter("w")), Admission::Queued);
  limiter.reconfigure(makeLimits(0, 2), nullptr);
  EXPECT_EQ(limiter.stats().queue_depth, 4u);
  EXPECT_EQ(limiter.admit(waiter("x")), Admission::QueueFull);
  limiter.cancel(waiters_[0]);
  limiter.cancel(waiters_[1]);
  EXPECT_EQ(limiter.admit(waiter("y")), Admission::QueueFull);  // depth 2: still not below
  limiter.cancel(waiters_[2]);
  EXPECT_EQ(limiter.admit(waiter("z")), Admission::Queued);
  settle(limiter);
  EXPECT_TRUE(log_.empty());
  drain(limiter);
}

TEST_F(LimiterTest, GateQueuesEvenWhenMaxInFlightIsUnlimited) {
  FakeGate gate(2);
  Limiter limiter(makeLimits(std::nullopt, 10), clock_, &gate);
  EXPECT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  EXPECT_EQ(limiter.admit(waiter("b")), Admission::Admitted);
  EXPECT_EQ(limiter.admit(waiter("c")), Admission::Queued);
  EXPECT_EQ(limiter.admit(waiter("d")), Admission::Queued);
  EXPECT_EQ(gate.free_, 0u);
  EXPECT_EQ(limiter.gateUnitsHeld(&gate), 2u);

  gate.grow(limiter, 1);  // a worker came up: its owner pumps
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"c:admitted"}));
  EXPECT_EQ(gate.free_, 0u);

  limiter.release();  // gives the unit back, then pumps "d" in with it
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"c:admitted", "d:admitted"}));
  EXPECT_EQ(gate.free_, 0u);
  EXPECT_EQ(limiter.stats().in_flight, 3u);

  for (int i = 0; i < 3; ++i) limiter.release();
  EXPECT_EQ(gate.free_, 3u);
  EXPECT_EQ(limiter.stats().in_flight, 0u);
  EXPECT_EQ(limiter.gateUnitsHeld(&gate), 0u);
}

TEST_F(LimiterTest, GateIsAskedOnlyWhenInFlightHasRoom) {
  FakeGate gate(10);
  Limiter limiter(makeLimits(1, 10), clock_, &gate);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  ASSERT_EQ(limiter.admit(waiter("b")), Admission::Queued);
  limiter.pump();
  EXPECT_EQ(gate.take_calls_, 1);
  EXPECT_EQ(gate.free_, 9u);
  limiter.release();
  EXPECT_EQ(gate.free_, 9u);  // a's unit back, b's taken
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:admitted"}));
  limiter.release();
  EXPECT_EQ(gate.free_, 10u);
}

TEST_F(LimiterTest, GateOwnerPumpingFromGiveBackIsSafe) {
  FakeGate gate(1);
  gate.pump_on_give_back_ = nullptr;
  Limiter limiter(makeLimits(std::nullopt, 10), clock_, &gate);
  gate.pump_on_give_back_ = &limiter;
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  ASSERT_EQ(limiter.admit(waiter("b")), Admission::Queued);
  ASSERT_EQ(limiter.admit(waiter("c")), Admission::Queued);
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:admitted"}));
  EXPECT_EQ(limiter.stats().in_flight, 1u);
  EXPECT_EQ(gate.free_, 0u);
  limiter.release();
  limiter.release();
  EXPECT_EQ(limiter.stats().in_flight, 0u);
  EXPECT_EQ(gate.free_, 1u);
}

TEST_F(LimiterTest, ReconfigureOntoAGateDoesNotRepayUnitsNeverTaken) {
  FakeGate gate(1);
  Limiter limiter(makeLimits(std::nullopt, 10), clock_);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);  // ungated
  limiter.reconfigure(makeLimits(std::nullopt, 10), &gate);
  ASSERT_EQ(limiter.admit(waiter("b")), Admission::Admitted);  // takes the gate's unit
  ASSERT_EQ(limiter.admit(waiter("c")), Admission::Queued);
  limiter.release();  // assumed to be "a" (admitted first): it took no unit, so none goes back
  EXPECT_EQ(gate.free_, 0u);
  settle(limiter);
  EXPECT_TRUE(log_.empty());
  limiter.release();
  EXPECT_EQ(gate.free_, 0u);  // one unit back, and "c" took it
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"c:admitted"}));
  limiter.release();
  EXPECT_EQ(gate.free_, 1u);  // never more than the gate ever had
}

TEST_F(LimiterTest, ReconfigureToANewGateRepaysTheOldOne) {
  FakeGate old_gate(2);
  FakeGate new_gate(1);
  Limiter limiter(makeLimits(std::nullopt, 10), clock_, &old_gate);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Admitted);
  ASSERT_EQ(limiter.admit(waiter("b")), Admission::Admitted);
  limiter.reconfigure(makeLimits(std::nullopt, 10), &new_gate);
  ASSERT_EQ(limiter.admit(waiter("c")), Admission::Admitted);
  EXPECT_EQ(limiter.gateUnitsHeld(&old_gate), 2u);
  EXPECT_EQ(limiter.gateUnitsHeld(&new_gate), 1u);
  limiter.release();
  limiter.release();
  EXPECT_EQ(old_gate.free_, 2u);
  EXPECT_EQ(new_gate.free_, 0u);
  EXPECT_EQ(limiter.gateUnitsHeld(&old_gate), 0u);
  limiter.release();
  EXPECT_EQ(new_gate.free_, 1u);

  // Switching back to a gate still owed units makes them ordinary again.
  ASSERT_EQ(limiter.admit(waiter("d")), Admission::Admitted);
  limiter.reconfigure(makeLimits(std::nullopt, 10), &old_gate);
  limiter.reconfigure(makeLimits(std::nullopt, 10), &new_gate);
  EXPECT_EQ(limiter.gateUnitsHeld(&new_gate), 1u);
  limiter.release();
  EXPECT_EQ(new_gate.free_, 1u);
  EXPECT_EQ(old_gate.free_, 2u);
}

TEST_F(LimiterTest, OnAdmittedThatReleasesAtOnce) {
  Limiter limiter(makeLimits(1, 10), clock_);
  ASSERT_EQ(limiter.admit(waiter("holder")), Admission::Admitted);
  TestWaiter& a = waiter("a");
  TestWaiter& b = waiter("b");
  TestWaiter& c = waiter("c");
  // "a" and "b" fail immediately on admission (e.g. an error path) and give the slot back from
  // inside the callback; "c" keeps it.
  a.on_admitted_ = [&] { limiter.release(); };
  b.on_admitted_ = [&] { limiter.release(); };
  for (TestWaiter* w : {&a, &b, &c}) ASSERT_EQ(limiter.admit(*w), Admission::Queued);

  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:admitted", "b:admitted", "c:admitted"}));
  EXPECT_EQ(limiter.stats().in_flight, 1u);
  EXPECT_EQ(limiter.stats().queue_depth, 0u);
  EXPECT_FALSE(clock_.armed_.has_value());
}

TEST_F(LimiterTest, OnAdmittedThatCancelsTheNextWaiter) {
  Limiter limiter(makeLimits(1, 10), clock_);
  ASSERT_EQ(limiter.admit(waiter("holder")), Admission::Admitted);
  TestWaiter& a = waiter("a");
  TestWaiter& b = waiter("b");
  TestWaiter& c = waiter("c");
  a.on_admitted_ = [&] {
    limiter.cancel(b);
    limiter.release();
  };
  for (TestWaiter* w : {&a, &b, &c}) ASSERT_EQ(limiter.admit(*w), Admission::Queued);
  limiter.release();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:admitted", "c:admitted"}));
  EXPECT_EQ(limiter.stats().in_flight, 1u);
}

TEST_F(LimiterTest, OnQueueTimeoutThatCancelsAnotherWaiter) {
  Limiter limiter(makeLimits(0, 10, milliseconds(100)), clock_);
  TestWaiter& a = waiter("a");
  TestWaiter& b = waiter("b");
  TestWaiter& c = waiter("c");
  // "b" has expired too, but "a"'s callback removes it first: it must get no callback.
  a.on_timeout_ = [&] { limiter.cancel(b); };
  for (TestWaiter* w : {&a, &b, &c}) ASSERT_EQ(limiter.admit(*w), Admission::Queued);
  clock_.now_ += 100;
  limiter.onTimer();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:timeout", "c:timeout"}));
  // Counted when refused: b's refusal was decided before its client left.
  EXPECT_EQ(limiter.stats().rejected_queue_timeout, 3u);
  EXPECT_EQ(limiter.stats().queue_depth, 0u);
  EXPECT_FALSE(clock_.armed_.has_value());
}

TEST_F(LimiterTest, OnQueueTimeoutThatReleasesAdmitsTheNext) {
  Limiter limiter(makeLimits(1, 10, milliseconds(100)), clock_);
  ASSERT_EQ(limiter.admit(waiter("holder")), Admission::Admitted);
  TestWaiter& a = waiter("a");
  ASSERT_EQ(limiter.admit(a), Admission::Queued);  // deadline 1100
  clock_.now_ = 1050;
  TestWaiter& b = waiter("b");
  ASSERT_EQ(limiter.admit(b), Admission::Queued);  // deadline 1150
  a.on_timeout_ = [&] { limiter.release(); };      // e.g. the holder finished meanwhile
  clock_.now_ = 1100;
  limiter.onTimer();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:timeout", "b:admitted"}));
  EXPECT_EQ(limiter.stats().in_flight, 1u);
  EXPECT_FALSE(clock_.armed_.has_value());
}

TEST_F(LimiterTest, FailAllQueuedRefusesEveryWaiter) {
  FakeGate gate(0);
  Limiter limiter(makeLimits(std::nullopt, 10), clock_, &gate);
  for (const char* name : {"a", "b", "c"})
    ASSERT_EQ(limiter.admit(waiter(name)), Admission::Queued);
  limiter.failAllQueued();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:timeout", "b:timeout", "c:timeout"}));
  EXPECT_EQ(limiter.stats().rejected_no_workers, 3u);
  EXPECT_EQ(limiter.stats().rejected_queue_timeout, 0u);
  EXPECT_EQ(limiter.stats().queue_depth, 0u);
  EXPECT_FALSE(clock_.armed_.has_value());
}

TEST_F(LimiterTest, FailAllQueuedWithACallbackThatCancels) {
  Limiter limiter(makeLimits(0, 10), clock_);
  TestWaiter& a = waiter("a");
  TestWaiter& b = waiter("b");
  a.on_timeout_ = [&] { limiter.cancel(b); };
  ASSERT_EQ(limiter.admit(a), Admission::Queued);
  ASSERT_EQ(limiter.admit(b), Admission::Queued);
  limiter.failAllQueued();
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:timeout"}));
  EXPECT_EQ(limiter.stats().rejected_no_workers, 2u);  // both refused; b left before it heard
}

TEST_F(LimiterTest, WaiterCanQueueAgainAfterLeaving) {
  Limiter limiter(makeLimits(1, 10), clock_);
  ASSERT_EQ(limiter.admit(waiter("holder")), Admission::Admitted);
  TestWaiter& a = waiter("a");
  ASSERT_EQ(limiter.admit(a), Admission::Queued);
  limiter.cancel(a);
  ASSERT_EQ(limiter.admit(a), Admission::Queued);
  EXPECT_EQ(limiter.stats().queue_depth, 1u);
  limiter.release();
  settle(limiter);
  EXPECT_EQ(a.admitted_, 1);
}

// ---------------------------------------------------------------------------------------------
// The completion rule: an outcome is decided at once and told in a later step (the loop's ready
// queue in the proxy), never on the stack of the call that decided it.

TEST_F(LimiterTest, AReleaseAdmitsTheNextWaiterInALaterStepNotOnTheReleasersStack) {
  Limiter limiter(makeLimits(1, 10), clock_);
  ASSERT_EQ(limiter.admit(waiter("holder")), Admission::Admitted);
  ASSERT_EQ(limiter.admit(waiter("a")), Admission::Queued);
  limiter.release();
  EXPECT_TRUE(log_.empty());  // not from inside release()
  EXPECT_TRUE(clock_.posted_);
  // Decided already: a holds the slot, so a newcomer queues behind nobody but cannot take it.
  EXPECT_EQ(limiter.stats().in_flight, 1u);
  EXPECT_EQ(limiter.stats().queue_depth, 0u);
  EXPECT_EQ(limiter.admit(waiter("late")), Admission::Queued);
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:admitted"}));
  drain(limiter);
}

TEST_F(LimiterTest, APumpAndATimeoutAndAFailureAreToldInALaterStep) {
  FakeGate gate(0);
  Limiter limiter(makeLimits(std::nullopt, 10, milliseconds(100)), clock_, &gate);
  for (const char* name : {"a", "b", "c"}) ASSERT_EQ(limiter.admit(waiter(name)), Admission::Queued);
  gate.grow(limiter, 1);  // the gate owner pumps: a takes the unit
  EXPECT_TRUE(log_.empty());
  clock_.now_ += 100;
  limiter.onTimer();  // b and c expire
  EXPECT_TRUE(log_.empty());
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:admitted", "b:timeout", "c:timeout"}));

  ASSERT_EQ(limiter.admit(waiter("d")), Admission::Queued);
  limiter.failAllQueued();
  EXPECT_EQ(log_.size(), 3u);
  settle(limiter);
  EXPECT_EQ(log_.back(), "d:timeout");
  limiter.release();
}

TEST_F(LimiterTest, AnEvictionIsToldInALaterStepNotOnTheNewcomersStack) {
  config::RouteLimits limits = makeLimits(1, 1);
  limits.queue_order = config::QueueOrder::Lifo;
  Limiter limiter(limits, clock_);
  ASSERT_EQ(limiter.admit(waiter("holder")), Admission::Admitted);
  ASSERT_EQ(limiter.admit(waiter("old")), Admission::Queued);
  ASSERT_EQ(limiter.admit(waiter("new")), Admission::Queued);
  EXPECT_TRUE(log_.empty());
  EXPECT_EQ(limiter.stats().rejected_queue_evicted, 1u);
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"old:evicted"}));
  drain(limiter);
}

TEST_F(LimiterTest, AWaiterCancelledBeforeItHearsOfItsSlotGivesItToTheNext) {
  FakeGate gate(1);
  Limiter limiter(makeLimits(1, 10), clock_, &gate);
  ASSERT_EQ(limiter.admit(waiter("holder")), Admission::Admitted);
  TestWaiter& a = waiter("a");
  TestWaiter& b = waiter("b");
  ASSERT_EQ(limiter.admit(a), Admission::Queued);
  ASSERT_EQ(limiter.admit(b), Admission::Queued);
  limiter.release();  // a gets the slot and the gate unit...
  EXPECT_EQ(limiter.gateUnitsHeld(&gate), 1u);
  limiter.cancel(a);  // ...but its client leaves before it hears: both go on to b
  EXPECT_EQ(limiter.stats().in_flight, 1u);
  EXPECT_EQ(limiter.gateUnitsHeld(&gate), 1u);
  EXPECT_EQ(gate.free_, 0u);
  settle(limiter);
  EXPECT_EQ(log_, (std::vector<std::string>{"b:admitted"}));  // never a call to a after cancel
  EXPECT_EQ(a.admitted_, 0);
  limiter.release();
  EXPECT_EQ(limiter.stats().in_flight, 0u);
  EXPECT_EQ(gate.free_, 1u);  // the unit went round exactly once
}

TEST_F(LimiterTest, AWaiterCancelledBeforeItHearsOfItsRefusalHearsNothing) {
  Limiter limiter(makeLimits(1, 10, milliseconds(100)), clock_);
  ASSERT_EQ(limiter.admit(waiter("holder")), Admission::Admitted);
  TestWaiter& a = waiter("a");
  ASSERT_EQ(limiter.admit(a), Admission::Queued);
  clock_.now_ += 100;
  limiter.onTimer();
  limiter.cancel(a);
  limiter.cancel(a);  // a second cancel is a no-op
  settle(limiter);
  EXPECT_TRUE(log_.empty());
  EXPECT_EQ(limiter.stats().in_flight, 1u);  // nothing was given back for a refusal
  limiter.release();
}

TEST_F(LimiterTest, ACallbackMayDropTheLastReferenceToItsLimiter) {
  // The request path holds a route's limiter through its config snapshot: the last request of
  // a route removed by a reload may free it from its own callback. ASan sees any touch after.
  auto limiter = std::make_shared<Limiter>(makeLimits(1, 10), clock_);
  ASSERT_EQ(limiter->admit(waiter("holder")), Admission::Admitted);
  TestWaiter& a = waiter("a");
  TestWaiter& b = waiter("b");
  ASSERT_EQ(limiter->admit(a), Admission::Queued);
  ASSERT_EQ(limiter->admit(b), Admission::Queued);
  b.on_timeout_ = [&] { limiter.reset(); };
  limiter->release();
  clock_.now_ += 5000;
  limiter->onTimer();  // b refused; a holds the slot
  Limiter* raw = limiter.get();
  a.on_admitted_ = [&] { raw->release(); };
  clock_.posted_ = false;
  raw->deliver();  // a hears; b's step is asked for again
  EXPECT_TRUE(clock_.posted_);
  raw->deliver();  // b hears, and frees the limiter; nothing of it is touched after
  EXPECT_EQ(limiter, nullptr);
  EXPECT_EQ(log_, (std::vector<std::string>{"a:admitted", "b:timeout"}));
}

}  // namespace
}  // namespace loopguard::routing
