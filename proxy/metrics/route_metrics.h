// Per-route counters. Keyed by route name and shared across config snapshots, so a reload
// keeps them (Prometheus counters must not reset while the process lives).
#pragma once

#include <cstdint>
#include <map>

#include "proxy/metrics/histogram.h"
#include "proxy/metrics/recent_window.h"

namespace loopguard::metrics {

struct RouteMetrics {
  std::map<int, uint64_t> requests_by_code;
  Histogram duration;
  Histogram queue_wait;
  RecentWindow recent;  // the last minute, for /status
  Histogram queue_refused_wait;  // how long refused requests waited before their answer
  uint64_t rejected_queue_full = 0;
  uint64_t rejected_queue_evicted = 0;
  uint64_t rejected_queue_timeout = 0;
  uint64_t rejected_no_workers = 0;

  // A request answered with `status` after `seconds`, at loop time `now_ms`.
  void recordResponse(int status, double seconds, uint64_t now_ms);
  void countRejection(const char* reason, uint64_t now_ms);
};

}  // namespace loopguard::metrics
