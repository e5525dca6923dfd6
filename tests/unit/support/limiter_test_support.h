// Fakes for the limiter's unit tests: a clock, a capacity gate, a waiter that logs.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "proxy/routing/limiter.h"

namespace loopguard::routing {

using std::chrono::milliseconds;

class FakeClock : public LimiterClock {
 public:
  TimePointMs now() const override { return now_; }
  void arm(TimePointMs deadline) override {
    armed_ = deadline;
    ++arm_calls_;
  }
  void disarm() override {
    armed_.reset();
    ++disarm_calls_;
  }
  // The later step: a test runs it with WaiterFixture::settle(), so it can look in between.
  void post() override { posted_ = true; }

  TimePointMs now_ = 1000;
  bool posted_ = false;
  std::optional<TimePointMs> armed_;
  int arm_calls_ = 0;
  int disarm_calls_ = 0;
};

// Runs the later steps that limiters on `clock` asked for, as the loop's ready queue would,
// until none is asked for: every decided waiter hears its outcome.
inline void settleAll(FakeClock& clock, std::initializer_list<Limiter*> limiters) {
  while (clock.posted_) {
    clock.posted_ = false;
    for (Limiter* limiter : limiters) limiter->deliver();
  }
}

// A pool's free worker slots. Like a real gate owner, it may pump a limiter when a unit comes
// back (set `pump_on_give_back`), which re-enters the limiter from inside release().
class FakeGate : public CapacityGate {
 public:
  explicit FakeGate(uint64_t units) : free_(units) {}
  bool tryTake() override {
    ++take_calls_;
    if (free_ == 0) return false;
    --free_;
    return true;
  }
  void giveBack() override {
    ++free_;
    if (pump_on_give_back_ != nullptr) pump_on_give_back_->pump();
  }
  bool hasCapacity() const override { return free_ > 0; }

  // The owner adds capacity (a worker became ready) and pumps, as the real one does.
  void grow(Limiter& limiter, uint64_t units) {
    free_ += units;
    limiter.pump();
  }

  uint64_t free_;
  int take_calls_ = 0;
  Limiter* pump_on_give_back_ = nullptr;
};

// Records every callback, in order, into a shared log; optional hooks run inside them.
class TestWaiter : public LimiterWaiter {
 public:
  TestWaiter(std::string name, std::vector<std::string>& log) : name_(std::move(name)), log_(log) {}
  void onAdmitted() override {
    ++admitted_;
    log_.push_back(name_ + ":admitted");
    if (on_admitted_) on_admitted_();
  }
  void onQueueTimeout() override {
    ++timed_out_;
    log_.push_back(name_ + ":timeout");
    if (on_timeout_) on_timeout_();
  }
  void onEvicted() override {
    ++evicted_;
    log_.push_back(name_ + ":evicted");
    if (on_evicted_) on_evicted_();
  }

  std::string name_;
  std::vector<std::string>& log_;
  int admitted_ = 0;
  int timed_out_ = 0;
  int evicted_ = 0;
  std::function<void()> on_admitted_;
  std::function<void()> on_timeout_;
  std::function<void()> on_evicted_;
};

inline config::RouteLimits makeLimits(std::optional<uint64_t> max_in_flight, uint64_t max_queue,
                                      milliseconds queue_timeout = milliseconds(5000)) {
  config::RouteLimits limits;
  limits.max_in_flight = max_in_flight;
  limits.max_queue = max_queue;
  limits.queue_timeout = queue_timeout;
  return limits;
}

// A fake clock and waiters that log their callbacks into one list.
class WaiterFixture : public ::testing::Test {
 protected:
  // Waiters live in a deque so their addresses stay put while more are added.
  TestWaiter& waiter(const std::string& name) { return waiters_.emplace_back(name, log_); }

  // Runs the later steps the limiter asked for, as the loop's ready queue would, until it asks
  // for none: every decided waiter hears its outcome.
  void settle(Limiter& limiter) { settleAll(clock_, {&limiter}); }

  // Leaves the limiter empty so its destructor's invariant holds whatever a test did.
  void drain(Limiter& limiter) {
    for (TestWaiter& w : waiters_) limiter.cancel(w);
  }

  FakeClock clock_;
  std::vector<std::string> log_;
  std::deque<TestWaiter> waiters_;
};

}  // namespace loopguard::routing
