#include "offload/sidecar.h"

namespace loopguard::offload {

config::RouteLimits sidecarLimits(const config::Pool& pool, const config::OffloadConfig& offload) {
  config::RouteLimits limits;
  limits.max_queue = offload.max_queue;
  limits.queue_timeout = offload.queue_timeout.value_or(pool.request_timeout);
  limits.overflow_status = 503;
  return limits;
}

std::shared_ptr<const config::Config> sidecarConfig(const config::Config& file) {
  auto config = std::make_shared<config::Config>(file);
  const config::Pool* pool = file.offload ? file.findPool(file.offload->pool) : nullptr;
  config->pools.clear();
  config->routes.clear();
  config->upstreams.clear();
  if (pool == nullptr) return config;
  config->listen = file.offload->listen;
  config->pools.push_back(*pool);
  config::Route route;
  route.name = kSidecarRoute;
  route.match.kind = config::MatchKind::Prefix;
  // assign(), not = "/": GCC 12 at -O3 reports a false -Wrestrict in operator=(const char*).
  route.match.pattern.assign(1, '/');
  route.target_kind = config::TargetKind::Pool;
  route.target = pool->name;
  route.limits = sidecarLimits(*pool, *file.offload);
  route.buffer_request = true;  // as for any pool route: a slow upload never holds a worker
  config->routes.push_back(std::move(route));
  return config;
}

}  // namespace loopguard::offload
