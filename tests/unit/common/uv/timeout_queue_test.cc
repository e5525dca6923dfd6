#include "common/uv/timeout_queue.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/unit/support/loop_runner.h"

namespace loopguard::uv {
namespace {

using loopguard::testing::runUntil;

struct Sleeper {
  Sleeper(std::vector<int>& log, int id) : log(log), id(id) {}
  void onTimeout() { log.push_back(id); }
  std::vector<int>& log;
  int id;
  Timeout timeout{this, &bindMethod<Sleeper, &Sleeper::onTimeout>};
};

TEST(TimeoutQueue, EntriesFireInDeadlineOrderOnceEach) {
  Loop loop;
  std::vector<int> fired;
  {
    TimeoutQueue queue(loop.get(), 20);
    Sleeper a(fired, 1), b(fired, 2), c(fired, 3);
    a.timeout.arm(queue);
    b.timeout.arm(queue);
    c.timeout.arm(queue);
    a.timeout.arm(queue);  // re-armed: now the last
    ASSERT_TRUE(runUntil(loop, [&] { return fired.size() == 3; }));
    EXPECT_EQ(fired, (std::vector<int>{2, 3, 1}));
    EXPECT_FALSE(a.timeout.armed());
    EXPECT_TRUE(queue.empty());
  }
  EXPECT_EQ(loop.close(), 0);
}

TEST(TimeoutQueue, CancelledOrDestroyedEntriesNeverFire) {
  Loop loop;
  std::vector<int> fired;
  {
    TimeoutQueue queue(loop.get(), 10);
    Sleeper kept(fired, 1), cancelled(fired, 2);
    cancelled.timeout.arm(queue);  // the head, cancelled: the timer stays armed for it
    {
      Sleeper gone(fired, 3);
      gone.timeout.arm(queue);
    }
    kept.timeout.arm(queue);
    cancelled.timeout.cancel();
    ASSERT_TRUE(runUntil(loop, [&] { return !fired.empty(); }));
    EXPECT_EQ(fired, (std::vector<int>{1}));
  }
  EXPECT_EQ(loop.close(), 0);
}

// A callback may re-arm itself or another entry: the queue takes its head anew each time.
TEST(TimeoutQueue, ACallbackMayRearm) {
  Loop loop;
  struct Repeater {
    TimeoutQueue* queue;
    int runs = 0;
    void onTimeout() {
      if (++runs < 3) timeout.arm(*queue);
    }
    Timeout timeout{this, &bindMethod<Repeater, &Repeater::onTimeout>};
  };
  {
    TimeoutQueue queue(loop.get(), 5);
    Repeater r{&queue};
    r.timeout.arm(queue);
    ASSERT_TRUE(runUntil(loop, [&] { return r.runs == 3; }));
    EXPECT_FALSE(r.timeout.armed());
  }
  EXPECT_EQ(loop.close(), 0);
}

// Its timer does not keep the loop alive: entries belong to objects with handles of their own,
// and one left armed for a cancelled entry must not hold up the end of the process.
TEST(TimeoutQueue, ItsTimerDoesNotHoldTheLoop) {
  Loop loop;
  {
    TimeoutQueue queue(loop.get(), 60'000);
    std::vector<int> fired;
    Sleeper s(fired, 1);
    s.timeout.arm(queue);
    s.timeout.cancel();
    uint64_t started = uv_hrtime();
    uv_run(loop.get(), UV_RUN_DEFAULT);
    EXPECT_LT(uv_hrtime() - started, uint64_t{1'000'000'000});
    EXPECT_TRUE(fired.empty());
  }
  EXPECT_EQ(loop.close(), 0);
}

// One queue per duration; a duration not seen before drops the queues nobody waits in (after a
// reload changed a timeout), and never one that still holds an entry.
TEST(TimeoutQueues, OneQueuePerDurationAndEmptyOnesGoWhenANewDurationComes) {
  Loop loop;
  std::vector<int> fired;
  {
    TimeoutQueues queues(loop.get());
    TimeoutQueue& busy = queues.of(10);
    EXPECT_EQ(&queues.of(10), &busy);
    Sleeper waiting(fired, 1);
    waiting.timeout.arm(busy);
    EXPECT_EQ(queues.of(30).duration(), 30u);
    EXPECT_EQ(queues.size(), 2u);
    EXPECT_EQ(queues.of(20).duration(), 20u);  // the 30 ms queue is empty: dropped
    EXPECT_EQ(queues.size(), 2u);
    EXPECT_EQ(&queues.of(10), &busy);  // still there: it holds an entry
    ASSERT_TRUE(runUntil(loop, [&] { return !fired.empty(); }));
    EXPECT_EQ(fired, (std::vector<int>{1}));
  }
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace loopguard::uv
