// `max_in_flight: auto`: the concurrency limit of one shared resource (the endpoints of an
// upstream, i.e. the app's processes, or a worker pool), from its measured latency. Pure logic
// with a LimiterClock; proxy/routing/route_limiter.h binds it to the loop.
//
// One AdaptiveLimit per upstream (or pool), shared by every auto route on it: Envoy's maintainers
// refused per-route loops on one resource because they cannot converge (envoy#15257). It is the
// routes' CapacityGate: a request of an auto route is admitted when its own route is under its
// cap (max_in_flight_max, or a share cap set here) AND the upstream's in-flight total is under
// the shared limit. Freed units go to the route whose oldest waiter is oldest (FairPump).
//
// The limit is the sum of one GradientController per endpoint. Each endpoint's update, at most
// once per RouteLatency window and only with at least kMinSamples samples:
//
//   load     = count-weighted median over routes R of p50(R, endpoint) / tolerated(R),
//              tolerated(R) = max(minRTT(R) * (1 + kBuffer), minRTT(R) + 0.5 ms)
//   gradient = clamp(1 / load, 0.5, 2)      (Envoy's minRTT * (1 + buffer) / sampleRTT; the
//                                            0.5 ms keeps a sub-ms upstream's jitter out)
//   gradient >= 1:  L = L * gradient + sqrt(L)   unless in flight stayed below L/2 (Gradient2:
//                                                an app-limited window says nothing about room)
//   gradient <  1:  L = L * (1 - kSmoothing) + L * gradient * kSmoothing       (Gradient2)
//   a window with a drop (5xx, timeout, reset):  L = L * kDropFactor          (AIMD)
//
// minRTT(R) is per route, so a change in the mix of a fast and a slow route is not read as
// queueing: the minimum over kMinRttAgeMs of each window's 10th percentile, from live traffic
// only. It ages out (a route whose real latency rose is re-baselined within kMinRttAgeMs) and is
// never re-measured by pinning the limit low: the only re-baselining is after kFloorWindows
// updates in a row at the floor, from the samples that were taken there anyway (Envoy's escape
// from a collapsed limit, #10647, without its 503 bursts).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/routing/fair_pump.h"
#include "proxy/routing/limiter.h"
#include "proxy/routing/limiter_clock.h"
#include "proxy/routing/route_latency.h"

namespace loopguard::routing {

// The seam for the loop-block advisor (proxy/advice/, built separately): whether the requests
// of a route block the event loop of the upstream's processes. A route it names gets a share of
// one request per endpoint (its useful concurrency per process is 1), and while it does the
// shared limit does not shrink on latency: the other routes' latency is that route's doing, and
// cutting their share would throttle the victims (notes §1.5). Drops still shrink it.
class LoopBlockOracle {
 public:
  virtual ~LoopBlockOracle() = default;
  // `target`: the upstream or pool name; `route`: an auto route that sends requests to it.
  virtual bool blocksLoop(std::string_view target, std::string_view route) const = 0;
};

// The update rule of one endpoint's limit (see the file comment).
class GradientController {
 public:
  static constexpr double kBuffer = 0.25;
  static constexpr double kMinGradient = 0.5;
  static constexpr double kMaxGradient = 2.0;
  static constexpr double kSmoothing = 0.2;
  static constexpr double kDropFactor = 0.9;

  struct Window {
    std::optional<double> ratio;  // sample RTT / tolerated RTT; nullopt: no timed sample
    bool dropped = false;
    bool app_limited = false;  // in flight stayed below half the limit
    bool may_decrease = true;  // false while a loop blocker is capped instead
  };

  explicit GradientController(double initial) : limit_(initial) {}
  void update(const Window& window, double floor, double ceiling);

  double limit() const { return limit_; }
  double gradient() const { return gradient_; }  // of the last update (kDropFactor on a drop)
  void scale(double factor) { limit_ *= factor; }

 private:
  double limit_;
  double gradient_ = 1.0;
};

class AdaptiveLimit final : public CapacityGate {
 public:
  static constexpr double kInitialLimit = 10;  // Envoy starts at 3, Netflix at 20
  static constexpr TimePointMs kMinRttAgeMs = 30'000;
  static constexpr TimePointMs kEndpointIdleMs = 60'000;  // then it leaves the sum
  static constexpr int kFloorWindows = 5;

  // `inner`: a further gate every admission needs too (a pool's worker slots), or nullptr.
  // `per_endpoint`: one controller per endpoint the samples name (an upstream's processes);
  // false: one for the whole target (a pool, whose workers come and go with new sockets).
  AdaptiveLimit(std::string target, LimiterClock& clock, CapacityGate* inner = nullptr,
                bool per_endpoint = true);
  AdaptiveLimit(const AdaptiveLimit&) = delete;
  AdaptiveLimit& operator=(const AdaptiveLimit&) = delete;

  // The auto routes on this resource, registered by every config snapshot (clearRoutes() then
  // addRoute() for each). A route's baseline survives a reload. The shared limit stays within
  // [largest max_in_flight_min, largest max_in_flight_max] of the routes.
  void clearRoutes();
  void addRoute(const std::string& route, std::weak_ptr<Limiter> limiter,
                const config::RouteLimits& limits);

  // A closed window of one route's latency samples (RouteLatency). Never calls a limiter back:
  // a limit that grew is handed out from the next onTimer().
  void onRouteWindow(std::string_view route, const LatencyWindow& window);

  void setLoopBlockOracle(const LoopBlockOracle* oracle) { oracle_ = oracle; }

  // The shared limit now, and the units taken under it.
  uint64_t limit() const;
  uint64_t inFlight() const { return in_flight_; }
  const std::string& target() const { return target_; }
  CapacityGate* inner() const { return inner_; }

  // CapacityGate
  bool tryTake() override;
  void giveBack() override;
  bool hasCapacity() const override;

  // The clock fired: admit waiters into room that an update made.
  void onTimer();

  // Telemetry (Envoy's concurrency_limit, gradient, min_rtt, sample_rtt).
  struct EndpointView {
    std::string name;
    double limit = 0;
    double gradient = 1;
    double ratio = 0;  // of its last update
  };
  struct RouteView {
    std::string name;
    std::optional<double> min_rtt_ms;
    double sample_rtt_ms = 0;  // p50 of its last window
    bool blocks_loop = false;
  };
  std::vector<EndpointView> endpoints() const;
  std::vector<RouteView> routes() const;

 private:
  struct Endpoint {
    Endpoint(std::string n, double initial) : name(std::move(n)), controller(initial) {}
    std::string name;
    GradientController controller;
    std::vector<std::pair<double, uint64_t>> ratios;  // (p50/minRTT, samples) since its update
    uint64_t samples = 0;
    uint64_t drops = 0;
    uint64_t peak_in_flight = 0;  // of the whole resource, since its update
    TimePointMs last_update = 0;
    TimePointMs last_sample = 0;
    double last_ratio = 0;
  };
  // Sliding minimum of the windows' low percentiles (a monotonic deque).
  struct Baseline {
    std::deque<std::pair<TimePointMs, double>> lows;
    void add(TimePointMs at, double low_us);
    void expire(TimePointMs now);
    std::optional<double> min() const;
  };
  struct Route {
    std::string name;
    std::weak_ptr<Limiter> limiter;  // expired or reset: not in the current snapshot
    uint64_t min = 1;
    uint64_t max = 1000;
    bool registered = false;
    bool blocks_loop = false;
    Baseline baseline;
    double last_p50_us = 0;
    TimePointMs last_window = 0;
  };

  Route* findRoute(std::string_view name);
  Endpoint& endpointFor(std::string_view name, TimePointMs now);
  void updateEndpoint(Endpoint& endpoint, TimePointMs now);
  void refreshBlame();
  void pruneIdle(TimePointMs now);
  double floor() const;
  double ceiling() const;
  void pumpRoutes();

  std::string target_;
  LimiterClock& clock_;
  CapacityGate* inner_;
  bool per_endpoint_;
  const LoopBlockOracle* oracle_ = nullptr;
  std::vector<Endpoint> endpoints_;
  std::vector<Route> routes_;
  std::vector<std::weak_ptr<Limiter>> limiters_;  // of the registered routes, for FairPump
  uint64_t in_flight_ = 0;
  int updates_at_floor_ = 0;
  FairPump pump_;
};

}  // namespace loopguard::routing
