// What the pools of one loopguard process look like from outside: the "pools" section of
// /status (every worker process with its state, pid, RSS, CPU, requests, and its slot's
// restarts with reasons) and the per-worker metrics
// loopguard_pool_worker_{cpu_seconds_total,resident_memory_bytes}{pool,index}.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "offload/pool_set.h"
#include "proxy/metrics/prometheus.h"

namespace loopguard::offload {

nlohmann::json poolsStatus(const PoolSet& pools, uint64_t now_ms);

// One series per configured worker slot (index), read from /proc for the process that serves
// the slot: the ready one, else the one starting, else the one stopping. A restart starts a new
// process, so the CPU counter resets then, as process_cpu_seconds_total does on a restart
// (rate() and increase() handle that).
void writeWorkerMetrics(const PoolSet& pools, metrics::PrometheusWriter& out);

}  // namespace loopguard::offload
