#include "proxy/metrics/route_metrics.h"

#include <string_view>

namespace loopguard::metrics {

void RouteMetrics::countRejection(const char* reason) {
  std::string_view r(reason);
  if (r == "queue_full") {
    ++rejected_queue_full;
  } else if (r == "queue_evicted") {
    ++rejected_queue_evicted;
  } else if (r == "queue_timeout") {
    ++rejected_queue_timeout;
  } else if (r == "no_workers") {
    ++rejected_no_workers;
  }
}

}  // namespace loopguard::metrics
