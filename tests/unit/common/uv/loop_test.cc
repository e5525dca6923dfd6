#include "common/uv/loop.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "common/uv/timer.h"
#include "tests/unit/support/loop_runner.h"

namespace loopguard::uv {
namespace {

using loopguard::testing::runUntil;
using loopguard::testing::step;

struct Counter {
  int runs = 0;
  void onCall() { ++runs; }
  ReadyCall call{this, &bindMethod<Counter, &Counter::onCall>};
};

TEST(ReadyQueue, APostedCallRunsFromTheLoopNotFromPost) {
  Loop loop;
  Counter c;
  c.call.post(loop.get());
  EXPECT_EQ(c.runs, 0);
  EXPECT_TRUE(c.call.posted());
  step(loop);
  EXPECT_EQ(c.runs, 1);
  EXPECT_FALSE(c.call.posted());
  EXPECT_EQ(loop.close(), 0);
}

TEST(ReadyQueue, PostingTwiceRunsOnce) {
  Loop loop;
  Counter c;
  c.call.post(loop.get());
  c.call.post(loop.get());
  step(loop);
  step(loop);
  EXPECT_EQ(c.runs, 1);
  EXPECT_EQ(loop.close(), 0);
}

TEST(ReadyQueue, ACancelledOrDestroyedCallNeverRuns) {
  Loop loop;
  Counter kept;
  kept.call.post(loop.get());
  kept.call.cancel();
  {
    Counter gone;
    gone.call.post(loop.get());
  }  // destroyed while posted: off the queue
  step(loop);
  EXPECT_EQ(kept.runs, 0);
  EXPECT_EQ(loop.close(), 0);
}

TEST(ReadyQueue, CallsPostedWhileDrainingRunInTheSamePass) {
  Loop loop;
  struct Chain {
    uv_loop_t* loop;
    int runs = 0;
    void onCall() {
      if (++runs < 3) call.post(loop);  // re-posting itself
    }
    ReadyCall call{this, &bindMethod<Chain, &Chain::onCall>};
  } chain{loop.get()};
  chain.call.post(loop.get());
  step(loop);
  EXPECT_EQ(chain.runs, 3);
  EXPECT_EQ(loop.close(), 0);
}

// What keeps uv_try_write's saving: a completion posted from an I/O callback runs in the check
// phase of the same loop iteration, with no second trip through epoll_wait in between.
TEST(ReadyQueue, ACallPostedFromAReadCallbackRunsInTheSameIteration) {
  Loop loop;
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  struct State {
    uv_loop_t* loop;
    int iterations = 0;  // counted before each poll
    int read_in = -1;
    int ran_in = -1;
    void onCall() { ran_in = iterations; }
    ReadyCall call{this, &bindMethod<State, &State::onCall>};
  } s{loop.get()};
  {
    Handle<uv_prepare_t> prepare;
    uv_prepare_init(loop.get(), prepare.get());
    prepare.markInitialized();
    prepare.get()->data = &s;
    uv_prepare_start(prepare.get(), [](uv_prepare_t* p) { ++static_cast<State*>(p->data)->iterations; });
    Handle<uv_pipe_t> pipe;
    uv_pipe_init(loop.get(), pipe.get(), 0);
    pipe.markInitialized();
    ASSERT_EQ(uv_pipe_open(pipe.get(), fds[0]), 0);
    pipe.get()->data = &s;
    uv_read_start(
        pipe.stream(),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          static char byte[16];
          *buf = uv_buf_init(byte, sizeof(byte));
        },
        [](uv_stream_t* stream, ssize_t n, const uv_buf_t*) {
          auto* st = static_cast<State*>(stream->data);
          if (n <= 0 || st->read_in >= 0) return;
          st->read_in = st->iterations;
          st->call.post(st->loop);
          EXPECT_EQ(st->ran_in, -1);  // not from inside post()
        });
    ASSERT_EQ(::write(fds[1], "x", 1), 1);
    ASSERT_TRUE(runUntil(loop, [&] { return s.ran_in >= 0; }));
    EXPECT_EQ(s.ran_in, s.read_in);
  }
  ::close(fds[1]);
  EXPECT_EQ(loop.close(), 0);
}

// Work posted before the poll (from a timer) must not wait for I/O that may never come.
TEST(ReadyQueue, ACallPostedFromATimerDoesNotWaitForTheNextEvent) {
  Loop loop;
  struct State {
    uv_loop_t* loop;
    bool ran = false;
    void onTimer() { call.post(loop); }
    void onCall() { ran = true; }
    ReadyCall call{this, &bindMethod<State, &State::onCall>};
  } s{loop.get()};
  {
    Timer far(loop.get(), nullptr, [](void*) {});  // something else keeps the loop waiting
    far.start(10'000);
    Timer soon(loop.get(), &s, &bindMethod<State, &State::onTimer>);
    soon.start(0);
    uint64_t started = uv_hrtime();
    uv_run(loop.get(), UV_RUN_ONCE);  // one iteration: timers, a non-blocking poll, the check
    EXPECT_TRUE(s.ran);
    EXPECT_LT(uv_hrtime() - started, uint64_t{2'000'000'000});
  }
  EXPECT_EQ(loop.close(), 0);
}

struct Tracked {
  Tracked(Loop& l, bool& flag) : loop(l), destroyed(flag) {}
  ~Tracked() {
    destroyed = true;
    if (then) then->call.post(loop.get());  // a destructor may post again: same drain
  }
  Loop& loop;
  bool& destroyed;
  Counter* then = nullptr;
};

TEST(DeferredDelete, DestroysAtTheEndOfTheTurnNotAtTheCall) {
  Loop loop;
  bool destroyed = false;
  Counter after;
  auto object = std::make_unique<Tracked>(loop, destroyed);
  object->then = &after;
  loop.deferDelete(std::move(object));
  EXPECT_FALSE(destroyed);
  step(loop);
  EXPECT_TRUE(destroyed);
  EXPECT_EQ(after.runs, 1);
  EXPECT_EQ(loop.close(), 0);
}

// The pattern it exists for: an object whose own callback is running hands itself over and
// keeps using its members until the callback returns (ASan would flag an early delete).
struct SelfOwned {
  SelfOwned(Loop& l, std::unique_ptr<SelfOwned>& h) : loop(l), holder(h) {}
  void onCall() {
    loop.deferDelete(std::move(holder));
    ++runs;  // still alive: the delete waits for the end of the turn
  }
  Loop& loop;
  std::unique_ptr<SelfOwned>& holder;
  int runs = 0;
  ReadyCall call{this, &bindMethod<SelfOwned, &SelfOwned::onCall>};
};

TEST(DeferredDelete, AnObjectMayHandItselfOverFromItsOwnCallback) {
  Loop loop;
  std::unique_ptr<SelfOwned> held;
  held = std::make_unique<SelfOwned>(loop, held);
  held->call.post(loop.get());
  step(loop);
  EXPECT_EQ(held, nullptr);
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace loopguard::uv
