// Measures the loop's own lag: a repeating timer that notes how late it fires. A busy loop
// (a slow callback, a flood of events) shows up here before it shows up in request latency.
#pragma once

#include <uv.h>

#include "common/uv/timer.h"

namespace loopguard::metrics {

class LoopLagMonitor {
 public:
  static constexpr uint64_t kIntervalMs = 250;

  explicit LoopLagMonitor(uv_loop_t* loop)
      : loop_(loop), timer_(loop, this, &uv::bindTimer<LoopLagMonitor, &LoopLagMonitor::onTick>) {}

  void start() {
    expected_ = uv_now(loop_) + kIntervalMs;
    timer_.start(kIntervalMs, kIntervalMs);
    timer_.unref();
  }
  void stop() { timer_.stop(); }
  double lagSeconds() const { return lag_ms_ / 1000.0; }

 private:
  void onTick() {
    // uv_now is cached at the start of the iteration; refresh it to see this callback's delay.
    uv_update_time(loop_);
    uint64_t now = uv_now(loop_);
    lag_ms_ = now > expected_ ? static_cast<double>(now - expected_) : 0.0;
    expected_ = now + kIntervalMs;
  }

  uv_loop_t* loop_;
  uv::Timer timer_;
  uint64_t expected_ = 0;
  double lag_ms_ = 0;
};

}  // namespace loopguard::metrics
