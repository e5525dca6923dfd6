// The limiting logic bound to the loop: each LimiterClock is a uv timer.
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
#include "proxy/routing/limiter.h"
#include "common/uv/timer.h"
#include "proxy/routing/route_latency.h"

namespace loopguard::routing {

// A LimiterClock on the loop: the loop's clock and one uv timer, whose callback is the owner's.
class LoopClock final : public LimiterClock {
 public:
  LoopClock(uv_loop_t* loop, void* owner, uv::Timer::Fn on_timer)
      : loop_(loop), timer_(loop, owner, on_timer) {}
  TimePointMs now() const override { return uv_now(loop_); }
  void arm(TimePointMs deadline) override {
    TimePointMs t = now();
    timer_.start(deadline > t ? deadline - t : 0);
  }
  void disarm() override { timer_.stop(); }

 private:
  uv_loop_t* loop_;
  uv::Timer timer_;
};

class AdaptiveGroup final {
 public:
  // `inner`: a pool's worker slots (then one controller for the pool), or null (an upstream:
  // one controller per endpoint).
  AdaptiveGroup(uv_loop_t* loop, std::string target, CapacityGate* inner)
      : clock_(loop, this, &uv::bindTimer<AdaptiveGroup, &AdaptiveGroup::onTimer>),
        limit_(std::move(target), clock_, inner, /*per_endpoint=*/inner == nullptr) {}

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
        clock_(loop, this, &uv::bindTimer<RouteLimiter, &RouteLimiter::onTimer>),
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

  std::string route_;
  LoopClock clock_;
  Limiter limiter_;
  RouteLatency latency_;
  std::shared_ptr<AdaptiveGroup> group_;
};

}  // namespace loopguard::routing
