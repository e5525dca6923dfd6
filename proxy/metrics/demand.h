// The time integral of a route's demand: requests in flight plus requests queued. Its rate()
// over any window is the average demand in that window (Little's law: L = λW), which is what
// an autoscaler should compare with the route's capacity (loopguard_route_demand_seconds_total
// and loopguard_route_capacity). A sampled gauge would miss every burst shorter than the scrape
// interval; the integral misses nothing.
//
// Exact for the clock it is given: demand is constant between two changes, so the integral is
// advanced at every change (update()) by level x elapsed, and a reading adds the level held
// since the last change. Integer request-milliseconds: no rounding drift however long it runs.
#pragma once

#include <cstdint>

namespace loopguard::metrics {

class DemandIntegrator {
 public:
  // The demand is `level` from `now_ms` on. A clock that steps back is taken as no time passing.
  void update(uint64_t now_ms, uint64_t level) {
    if (now_ms > last_ms_) {
      area_ms_ += level_ * (now_ms - last_ms_);
      last_ms_ = now_ms;
    }
    level_ = level;
  }
  // The integral up to `now_ms`, in request-milliseconds.
  uint64_t requestMilliseconds(uint64_t now_ms) const {
    return area_ms_ + (now_ms > last_ms_ ? level_ * (now_ms - last_ms_) : 0);
  }
  double requestSeconds(uint64_t now_ms) const {
    return static_cast<double>(requestMilliseconds(now_ms)) / 1000.0;
  }
  uint64_t level() const { return level_; }

 private:
  uint64_t area_ms_ = 0;
  uint64_t last_ms_ = 0;
  uint64_t level_ = 0;
};

}  // namespace loopguard::metrics
