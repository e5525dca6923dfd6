// Running a private loop in a unit test: step it until something observable happened, with a
// deadline, never a fixed sleep. Every test that uses a loop ends with
// EXPECT_EQ(loop.close(), 0), which is uv_loop_close() succeeding: no handle left open.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>

#include "common/uv/loop.h"
#include "common/uv/timer.h"

namespace loopguard::testing {

// Runs `loop` one iteration at a time until `done()` or `timeout_ms` passed; returns done().
inline bool runUntil(uv::Loop& loop, const std::function<bool()>& done,
                     uint64_t timeout_ms = 5000) {
  // A ref'd timer bounds each blocking poll, so a test that waits in vain fails, not hangs.
  uv::Timer guard(loop.get(), nullptr, [](void*) {});
  guard.start(timeout_ms);
  uv_update_time(loop.get());
  uint64_t deadline = uv_now(loop.get()) + timeout_ms;
  while (!done() && uv_now(loop.get()) < deadline) uv_run(loop.get(), UV_RUN_ONCE);
  return done();
}

// One iteration that does not block: what is ready runs, then it returns.
inline void step(uv::Loop& loop) { uv_run(loop.get(), UV_RUN_NOWAIT); }

}  // namespace loopguard::testing
