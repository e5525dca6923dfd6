// What /proc says about a process: CPU time, resident memory, start time, file descriptors.
// For the standard process_* metrics of the proxy itself, and for each worker of a pool
// (CPU and RSS, and the max_rss recycling check).
//
// /proc is served from memory by the kernel, so these synchronous reads do not block the loop
// the way a disk read could; each is one open + read of a small file.
#pragma once

#include <cstdint>
#include <optional>

#include "proxy/metrics/prometheus.h"

namespace loopguard::metrics {

struct ProcessStats {
  double cpu_seconds = 0;        // user + system, this process only (not its children)
  uint64_t resident_bytes = 0;
  double start_time_seconds = 0;  // since the Unix epoch
};

// From /proc/PID/stat; nullopt once the process is gone (or its entry cannot be read).
std::optional<ProcessStats> readProcessStats(int pid);
// Resident set size of `pid` in bytes; 0 if unknown.
uint64_t residentBytes(int pid);

// Descriptors of this process: open (entries of /proc/self/fd) and the soft RLIMIT_NOFILE.
struct FdStats {
  uint64_t open = 0;
  uint64_t max = 0;
};
FdStats readOwnFdStats();

// process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds,
// process_max_fds and process_start_time_seconds of this process (the names and meanings
// Prometheus client libraries use, so dashboards built for them work unchanged).
void writeProcessMetrics(PrometheusWriter& out);

}  // namespace loopguard::metrics
