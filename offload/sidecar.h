// `loopguard offload`: the config it serves. The file's own settings (log, limits, timeouts,
// admin) stay; its pools shrink to `offload.pool`; its routes are replaced by one implicit
// route, "offload", that sends every path to that pool.
#pragma once

#include <memory>

#include "config/config.h"

namespace loopguard::offload {

inline constexpr const char* kSidecarRoute = "offload";
// The sidecar route queues at most this many requests beyond its workers' slots. The proxy in
// front is expected to hold the real limits; this only bounds what the sidecar keeps waiting.
inline constexpr uint64_t kSidecarMaxQueue = 1024;

// The implicit route's limits: no max_in_flight (the worker slots are the limit), a queue of
// kSidecarMaxQueue, waited in for at most the pool's request_timeout (a slot frees within that
// time or its worker is killed).
config::RouteLimits sidecarLimits(const config::Pool& pool);

// `file` must have an `offload` section naming one of its pools (the loader checks both for
// Purpose::Offload).
std::shared_ptr<const config::Config> sidecarConfig(const config::Config& file);

}  // namespace loopguard::offload
