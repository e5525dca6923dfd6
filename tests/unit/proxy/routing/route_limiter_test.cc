// A RouteLimiter on a private loop: a queued request hears its outcome from the loop's ready
// queue (its LoopClock's ready call), never on the stack of the release or admission that
// decided it.
#include "proxy/routing/route_limiter.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>

#include "tests/unit/support/loop_runner.h"

namespace loopguard::routing {
namespace {

using loopguard::testing::runUntil;
using loopguard::testing::step;

struct Waiter final : LimiterWaiter {
  void onAdmitted() override {
    ++admitted;
    if (on_admitted) on_admitted();
  }
  void onQueueTimeout() override { ++timed_out; }
  void onEvicted() override { ++evicted; }
  int admitted = 0;
  int timed_out = 0;
  int evicted = 0;
  std::function<void()> on_admitted;
};

config::RouteLimits oneAtATime(std::chrono::milliseconds queue_timeout =
                                   std::chrono::milliseconds(5000)) {
  config::RouteLimits l;
  l.max_in_flight = 1;
  l.max_queue = 4;
  l.queue_timeout = queue_timeout;
  return l;
}

TEST(RouteLimiterOnALoop, AReleaseAdmitsTheNextRequestFromTheLoop) {
  uv::Loop loop;
  {
    auto route = std::make_shared<RouteLimiter>(loop.get(), "r", oneAtATime(), nullptr);
    Limiter& limiter = route->limiter();
    Waiter holder, next;
    ASSERT_EQ(limiter.admit(holder), Admission::Admitted);
    ASSERT_EQ(limiter.admit(next), Admission::Queued);
    limiter.release();
    EXPECT_EQ(next.admitted, 0);  // not on the releaser's stack
    step(loop);
    EXPECT_EQ(next.admitted, 1);
    limiter.release();
  }
  EXPECT_EQ(loop.close(), 0);
}

TEST(RouteLimiterOnALoop, AQueueTimeoutArrivesFromTheLoop) {
  uv::Loop loop;
  {
    auto route = std::make_shared<RouteLimiter>(loop.get(), "r",
                                                oneAtATime(std::chrono::milliseconds(20)), nullptr);
    Limiter& limiter = route->limiter();
    Waiter holder, late;
    ASSERT_EQ(limiter.admit(holder), Admission::Admitted);
    ASSERT_EQ(limiter.admit(late), Admission::Queued);
    ASSERT_TRUE(runUntil(loop, [&] { return late.timed_out == 1; }));
    EXPECT_EQ(limiter.stats().rejected_queue_timeout, 1u);
    limiter.release();
  }
  EXPECT_EQ(loop.close(), 0);
}

// The last request of a route a reload removed may drop the route's limiter from its own
// callback: the ready call goes with it, and nothing of it is touched after (ASan checks).
TEST(RouteLimiterOnALoop, ACallbackMayDropTheLastReferenceToTheRoute) {
  uv::Loop loop;
  auto route = std::make_shared<RouteLimiter>(loop.get(), "r", oneAtATime(), nullptr);
  Waiter holder, next;
  ASSERT_EQ(route->limiter().admit(holder), Admission::Admitted);
  ASSERT_EQ(route->limiter().admit(next), Admission::Queued);
  next.on_admitted = [&] {
    route->limiter().release();
    route.reset();
  };
  route->limiter().release();
  ASSERT_TRUE(runUntil(loop, [&] { return route == nullptr; }));
  EXPECT_EQ(next.admitted, 1);
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace loopguard::routing
