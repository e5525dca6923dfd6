#include "proxy/metrics/route_metrics.h"

#include <string_view>

namespace loopguard::metrics {

void RouteMetrics::recordResponse(int status, double seconds, uint64_t now_ms) {
  ++requests_by_code[status];
  duration.record(seconds);
  recent.recordResponse(now_ms, seconds, status);
}

void RouteMetrics::countRejection(const char* reason, uint64_t now_ms) {
  std::string_view r(reason);
  if (r == "queue_full") {
    ++rejected_queue_full;
  } else if (r == "queue_evicted") {
    ++rejected_queue_evicted;
  } else if (r == "queue_timeout") {
    ++rejected_queue_timeout;
  } else if (r == "no_workers") {
    ++rejected_no_workers;
  } else {
    return;
  }
  recent.recordRefusal(now_ms);
}

}  // namespace loopguard::metrics
