// The limiting logic bound to the loop: each LimiterClock is a uv timer and a ready call.
//
//   RouteLimiter   a route's Limiter, and the route's upstream-time samples (RouteLatency),
//                  which scale its queue policy and feed its AdaptiveGroup when it is `auto`.
//                  Shared (shared_ptr) by every config snapshot that has the route, so its
//                  counts survive a reload.
//   AdaptiveGroup  the AdaptiveLimit of one upstream (or pool), shared by its auto routes.
#pragma once

#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/routing/adaptive_limit.h"
#include "common/uv/loop.h"
#include "common/uv/timer.h"
#include "proxy/routing/limiter.h"
#include "proxy/routing/route_latency.h"

namespace loopguard::routing {

// A LimiterClock on the loop: the loop's clock, one uv timer and one call posted to the loop's
// ready queue, whose callbacks are the owner's. Without `on_ready`, post() must not be called.
class LoopClock final : public LimiterClock {
 public:
  LoopClock(uv_loop_t* loop, void* owner, uv::Timer::Fn on_timer,
            uv::ReadyCall::Fn on_ready = nullptr)
      : loop_(loop), timer_(loop, owner, on_timer), ready_(owner, on_ready) {}
  TimePointMs now() const override { return uv_now(loop_); }
  void arm(TimePointMs deadline) override {
    TimePointMs t = now();
    timer_.start(deadline > t ? deadline - t : 0);
  }
  void disarm() override { timer_.stop(); }
  void post() override { ready_.post(loop_); }

 private:
  uv_loop_t* loop_;
  uv::Timer timer_;
  uv::ReadyCall ready_;  // cancelled by its destruction: never runs after its owner is gone
};

class AdaptiveGroup final {
 public:
  // `inner`: a pool's worker slots or a cluster's endpoints, or null. `per_endpoint`: one
  // controller per endpoint (an upstream), or one for the whole target (a pool).
  AdaptiveGroup(uv_loop_t* loop, std::string target, CapacityGate* inner, bool per_endpoint)
      : clock_(loop, this, &uv::bindTimer<AdaptiveGroup, &AdaptiveGroup::onTimer>),
        limit_(std::move(target), clock_, inner, per_endpoint) {}

  AdaptiveLimit& limit() { return limit_; }
  const AdaptiveLimit& limit() const { return limit_; }

 private:
  void onTimer() { limit_.onTimer(); }

  LoopClock clock_;
  AdaptiveLimit limit_;
};

class RouteLimiter final {
 public:
  RouteLimiter(uv_loop_t* loop, std::string route, const config::RouteLimits& limits,
               CapacityGate* gate)
      : route_(std::move(route)),
        clock_(loop, this, &uv::bindTimer<RouteLimiter, &RouteLimiter::onTimer>,
               &uv::bindMethod<RouteLimiter, &RouteLimiter::onReady>),
        limiter_(limits, clock_, gate) {}

  Limiter& limiter() { return limiter_; }
  const Limiter& limiter() const { return limiter_; }

  // The group an auto route shares its limit with (null: a fixed limit). Set by every snapshot.
  void bindGroup(std::shared_ptr<AdaptiveGroup> group) { group_ = std::move(group); }
  const std::shared_ptr<AdaptiveGroup>& group() const { return group_; }

  // The request path's hook: one upstream attempt of this route, from the request fully
  // written (`sent_us`) to the response head, or to the failure (`done_us`), both from
  // uv_hrtime() in microseconds. Client aborts are not reported. Never calls a waiter back.
  void recordUpstream(std::string_view endpoint, uint64_t sent_us, uint64_t done_us,
                      SampleOutcome outcome) {
    uint64_t rtt = done_us > sent_us ? done_us - sent_us : 0;
    if (!latency_.add(endpoint, rtt, outcome, clock_.now())) return;
    if (latency_.p50Ms() && latency_.p90Ms()) {
      limiter_.setServiceTime(*latency_.p50Ms(), *latency_.p90Ms());
    }
    if (group_) group_->limit().onRouteWindow(route_, latency_.lastWindow());
  }

  // The limit in force for this route: max_in_flight (nullopt: unlimited), or for auto the
  // shared limit capped by the route's own.
  std::optional<uint64_t> currentLimit() const {
    std::optional<uint64_t> cap = limiter_.routeCap();
    if (!limiter_.limits().max_in_flight_auto || !group_) return cap;
    uint64_t shared = group_->limit().limit();
    return cap ? std::min(*cap, shared) : shared;
  }

  const RouteLatency& latency() const { return latency_; }

 private:
  void onTimer() { limiter_.onTimer(); }
  // Nothing of ours after it: the waiter's callback may drop the last reference to us.
  void onReady() { limiter_.deliver(); }

  std::string route_;
  LoopClock clock_;
  Limiter limiter_;
  RouteLatency latency_;
  std::shared_ptr<AdaptiveGroup> group_;
};

// For FairPump: a route's limiter.
inline Limiter& limiterOf(RouteLimiter& route) { return route.limiter(); }

}  // namespace loopguard::routing
