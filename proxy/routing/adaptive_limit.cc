#include "proxy/routing/adaptive_limit.h"

#include <algorithm>
#include <cmath>

namespace loopguard::routing {
namespace {

// A wobble this small is the loop's own jitter, not queueing: the tolerated RTT is at least the
// minimum plus this much, whatever kBuffer makes of a sub-millisecond minimum.
constexpr double kMinBufferUs = 500;

// The value below which half the weight lies (the count-weighted median of notes §1.5).
double weightedMedian(std::vector<std::pair<double, uint64_t>> values) {
  std::sort(values.begin(), values.end());
  uint64_t total = 0;
  for (const auto& [value, weight] : values) total += weight;
  uint64_t seen = 0;
  for (const auto& [value, weight] : values) {
    seen += weight;
    if (2 * seen >= total) return value;
  }
  return values.empty() ? 1.0 : values.back().first;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GradientController

void GradientController::update(const Window& window, double floor, double ceiling) {
  if (window.dropped) {
    gradient_ = kDropFactor;
    limit_ *= kDropFactor;
  } else if (window.ratio) {
    gradient_ = std::clamp(1.0 / *window.ratio, kMinGradient, kMaxGradient);
    if (gradient_ >= 1.0) {
      // Headroom only at gradient >= 1 (adding it under mild overload makes the limit creep up
      // forever: Netflix concurrency-limits#134), and never from an app-limited window.
      if (!window.app_limited) limit_ = limit_ * gradient_ + std::sqrt(limit_);
    } else if (window.may_decrease) {
      limit_ = limit_ * (1.0 - kSmoothing) + limit_ * gradient_ * kSmoothing;
    }
  }
  limit_ = std::clamp(limit_, floor, ceiling);
}

// ---------------------------------------------------------------------------------------------
// Baseline: the sliding minimum of the windows' low percentiles

void AdaptiveLimit::Baseline::add(TimePointMs at, double low_us) {
  while (!lows.empty() && lows.back().second >= low_us) lows.pop_back();
  lows.emplace_back(at, low_us);
}

void AdaptiveLimit::Baseline::expire(TimePointMs now) {
  while (!lows.empty() && lows.front().first + kMinRttAgeMs < now) lows.pop_front();
}

std::optional<double> AdaptiveLimit::Baseline::min() const {
  if (lows.empty()) return std::nullopt;
  return lows.front().second;
}

// ---------------------------------------------------------------------------------------------
// AdaptiveLimit

AdaptiveLimit::AdaptiveLimit(std::string target, LimiterClock& clock, CapacityGate* inner,
                             bool per_endpoint)
    : target_(std::move(target)), clock_(clock), inner_(inner), per_endpoint_(per_endpoint) {}

void AdaptiveLimit::clearRoutes() {
  for (Route& r : routes_) {
    r.registered = false;
    r.limiter.reset();
  }
  limiters_.clear();
}

void AdaptiveLimit::addRoute(const std::string& route, std::weak_ptr<Limiter> limiter,
                             const config::RouteLimits& limits) {
  Route* r = findRoute(route);
  if (r == nullptr) {
    routes_.emplace_back();
    r = &routes_.back();
    r->name = route;
  }
  r->registered = true;
  r->limiter = limiter;
  r->min = limits.max_in_flight_min;
  r->max = limits.max_in_flight_max;
  limiters_.push_back(std::move(limiter));
  refreshBlame();
}

AdaptiveLimit::Route* AdaptiveLimit::findRoute(std::string_view name) {
  for (Route& r : routes_) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

double AdaptiveLimit::floor() const {
  uint64_t most = 0;
  for (const Route& r : routes_) {
    if (r.registered) most = std::max(most, r.min);
  }
  return static_cast<double>(std::max<uint64_t>(most, 1));
}

double AdaptiveLimit::ceiling() const {
  uint64_t most = 0;
  for (const Route& r : routes_) {
    if (r.registered) most = std::max(most, r.max);
  }
  return static_cast<double>(most == 0 ? 1000 : most);
}

uint64_t AdaptiveLimit::limit() const {
  double sum = 0;
  for (const Endpoint& e : endpoints_) sum += e.controller.limit();
  if (endpoints_.empty()) sum = kInitialLimit;
  return static_cast<uint64_t>(std::llround(std::clamp(sum, floor(), ceiling())));
}

AdaptiveLimit::Endpoint& AdaptiveLimit::endpointFor(std::string_view name, TimePointMs now) {
  for (Endpoint& e : endpoints_) {
    if (e.name == name) return e;
  }
  // A new endpoint (a replica joined) starts at the others' mean: it adds that much capacity.
  double initial = kInitialLimit;
  if (!endpoints_.empty()) {
    double sum = 0;
    for (const Endpoint& e : endpoints_) sum += e.controller.limit();
    initial = sum / static_cast<double>(endpoints_.size());
  }
  endpoints_.emplace_back(std::string(name), initial);
  Endpoint& e = endpoints_.back();
  e.last_update = now;
  e.peak_in_flight = in_flight_;
  return e;
}

void AdaptiveLimit::onRouteWindow(std::string_view route_name, const LatencyWindow& window) {
  Route* route = findRoute(route_name);
  if (route == nullptr || !route->registered) return;
  const TimePointMs now = window.closed_at;
  route->baseline.expire(now);
  if (window.samples > 0) {
    route->baseline.add(now, window.p10_us);
    route->last_p50_us = window.p50_us;
  }
  route->last_window = now;
  std::optional<double> min_us = route->baseline.min();
  double tolerated = 0;
  if (min_us) {
    tolerated = std::max(*min_us * (1.0 + GradientController::kBuffer), *min_us + kMinBufferUs);
  }

  const uint64_t before = limit();
  std::vector<size_t> due;
  for (const EndpointWindow& part : window.endpoints) {
    Endpoint& e = endpointFor(per_endpoint_ ? std::string_view(part.endpoint) : target_, now);
    e.last_sample = now;
    if (part.samples > 0 && tolerated > 0) {
      e.ratios.emplace_back(part.p50_us / tolerated, part.samples);
    }
    e.samples += part.samples;
    e.drops += part.drops;
    size_t index = static_cast<size_t>(&e - endpoints_.data());
    if (e.samples + e.drops >= RouteLatency::kMinSamples &&
        now - e.last_update >= RouteLatency::kMinWindowMs &&
        std::find(due.begin(), due.end(), index) == due.end()) {
      due.push_back(index);
    }
  }
  for (size_t i : due) updateEndpoint(endpoints_[i], now);
  pruneIdle(now);
  // Hand out new room later, from the timer: this runs inside a response's parser callback.
  if (limit() > before) clock_.arm(clock_.now());
}

void AdaptiveLimit::updateEndpoint(Endpoint& e, TimePointMs now) {
  bool blocker_capped = std::any_of(routes_.begin(), routes_.end(),
                                    [](const Route& r) { return r.registered && r.blocks_loop; });
  GradientController::Window w;
  w.dropped = e.drops > 0;
  if (!e.ratios.empty()) w.ratio = weightedMedian(std::move(e.ratios));
  w.app_limited = 2 * e.peak_in_flight < limit();
  w.may_decrease = !blocker_capped;
  const double n = static_cast<double>(endpoints_.size());
  e.controller.update(w, std::max(1.0, floor() / n), ceiling());
  if (w.ratio) e.last_ratio = *w.ratio;

  e.ratios.clear();
  e.samples = 0;
  e.drops = 0;
  e.peak_in_flight = in_flight_;
  e.last_update = now;

  // A limit stuck at the floor while latency keeps it there: the baseline is likely too low (a
  // lucky window, or the app got slower for good). The samples taken at the floor are the
  // cleanest there are, so the next windows re-seed it.
  if (static_cast<double>(limit()) <= floor()) {
    if (++updates_at_floor_ >= kFloorWindows) {
      for (Route& r : routes_) r.baseline.lows.clear();
      updates_at_floor_ = 0;
    }
  } else {
    updates_at_floor_ = 0;
  }
  refreshBlame();
}

void AdaptiveLimit::refreshBlame() {
  const uint64_t share = std::max<uint64_t>(1, endpoints_.size());
  bool raised = false;
  for (Route& r : routes_) {
    if (!r.registered) continue;
    bool blocks = oracle_ != nullptr && oracle_->blocksLoop(target_, r.name);
    if (blocks != r.blocks_loop && !blocks) raised = true;
    r.blocks_loop = blocks;
    if (std::shared_ptr<Limiter> limiter = r.limiter.lock()) {
      limiter->setShareCap(blocks ? std::optional<uint64_t>(share) : std::nullopt);
    }
  }
  if (raised) clock_.arm(clock_.now());
}

void AdaptiveLimit::pruneIdle(TimePointMs now) {
  // Endpoints gone from DNS (or a pool's restarted worker sockets) stop counting; an upstream
  // that is idle as a whole keeps what it learnt.
  auto idle = [now](const Endpoint& e) { return e.last_sample + kEndpointIdleMs < now; };
  if (!std::all_of(endpoints_.begin(), endpoints_.end(), idle)) {
    std::erase_if(endpoints_, idle);
  }
  std::erase_if(routes_, [now](const Route& r) {
    return !r.registered && r.last_window + kMinRttAgeMs < now;
  });
}

bool AdaptiveLimit::tryTake() {
  if (!pump_.mayTake() || in_flight_ >= limit()) return false;
  if (inner_ != nullptr && !inner_->tryTake()) return false;
  ++in_flight_;
  pump_.took();
  for (Endpoint& e : endpoints_) e.peak_in_flight = std::max(e.peak_in_flight, in_flight_);
  return true;
}

void AdaptiveLimit::giveBack() {
  if (in_flight_ > 0) --in_flight_;
  if (inner_ != nullptr) {
    inner_->giveBack();  // the pool pumps every limiter that waits on it, ours included
  } else {
    pumpRoutes();
  }
}

bool AdaptiveLimit::hasCapacity() const {
  return in_flight_ < limit() && (inner_ == nullptr || inner_->hasCapacity());
}

void AdaptiveLimit::onTimer() { pumpRoutes(); }

void AdaptiveLimit::pumpRoutes() {
  pump_.run(limiters_, [this] { return hasCapacity(); });
}

std::vector<AdaptiveLimit::EndpointView> AdaptiveLimit::endpoints() const {
  std::vector<EndpointView> out;
  for (const Endpoint& e : endpoints_) {
    out.push_back({e.name, e.controller.limit(), e.controller.gradient(), e.last_ratio});
  }
  return out;
}

std::vector<AdaptiveLimit::RouteView> AdaptiveLimit::routes() const {
  std::vector<RouteView> out;
  for (const Route& r : routes_) {
    if (!r.registered) continue;
    RouteView v;
    v.name = r.name;
    if (std::optional<double> min = r.baseline.min()) v.min_rtt_ms = *min / 1000.0;
    v.sample_rtt_ms = r.last_p50_us / 1000.0;
    v.blocks_loop = r.blocks_loop;
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace loopguard::routing
