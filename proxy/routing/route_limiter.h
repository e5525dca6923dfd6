// A route's Limiter bound to the loop: the LimiterClock is a uv timer. Shared (shared_ptr) by
// every config snapshot that has the route, so its counts survive a reload.
#pragma once

#include <uv.h>

#include "proxy/routing/limiter.h"
#include "common/uv/timer.h"

namespace loopguard::routing {

class RouteLimiter final : private LimiterClock {
 public:
  RouteLimiter(uv_loop_t* loop, const config::RouteLimits& limits, CapacityGate* gate)
      : loop_(loop),
        timer_(loop, this, &uv::bindTimer<RouteLimiter, &RouteLimiter::onTimer>),
        limiter_(limits, *this, gate) {}

  Limiter& limiter() { return limiter_; }

 private:
  TimePointMs now() const override { return uv_now(loop_); }
  void arm(TimePointMs deadline) override {
    TimePointMs t = now();
    timer_.start(deadline > t ? deadline - t : 0);
  }
  void disarm() override { timer_.stop(); }
  void onTimer() { limiter_.onTimer(); }

  uv_loop_t* loop_;
  uv::Timer timer_;
  Limiter limiter_;
};

}  // namespace loopguard::routing
