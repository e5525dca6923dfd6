// `loopguard offload`: the config it serves. The file's own settings (log, limits, timeouts,
// admin) stay; its pools shrink to `offload.pool`; its routes are replaced by one implicit
// route, "offload", that sends every path to that pool.
#pragma once

#include <memory>

#include "config/config.h"

namespace loopguard::offload {

inline constexpr const char* kSidecarRoute = "offload";
// The implicit route's limits: no max_in_flight (the worker slots are the limit), a queue of
// offload.max_queue (default 1024), waited in for at most offload.queue_timeout (default: the
// pool's request_timeout: a slot frees within that time or its worker is killed).
config::RouteLimits sidecarLimits(const config::Pool& pool, const config::OffloadConfig& offload);

// `file` must have an `offload` section naming one of its pools (the loader checks both for
// Purpose::Offload).
std::shared_ptr<const config::Config> sidecarConfig(const config::Config& file);

}  // namespace loopguard::offload
