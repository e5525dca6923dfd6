#include "proxy/metrics/process_stats.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

namespace loopguard::metrics {

namespace {

// The whole of a small /proc file, or nullopt.
std::optional<std::string> readSmallFile(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 64 * 1024) break;  // no /proc file we read is near this
  }
  ::close(fd);
  if (text.empty()) return std::nullopt;
  return text;
}

// When the machine booted (btime of /proc/stat), in seconds since the epoch. Read once: it
// does not change while the machine runs.
double bootTimeSeconds() {
  static const double boot = [] {
    std::optional<std::string> stat = readSmallFile("/proc/stat");
    if (!stat) return 0.0;
    size_t at = stat->find("\nbtime ");
    return at == std::string::npos ? 0.0 : std::strtod(stat->c_str() + at + 7, nullptr);
  }();
  return boot;
}

}  // namespace

std::optional<ProcessStats> readProcessStats(int pid) {
  if (pid <= 0) return std::nullopt;
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  std::optional<std::string> text = readSmallFile(path.c_str());
  if (!text) return std::nullopt;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted
  // from the last ')'. After it, field 3 (state) is the first; utime is 14, stime 15,
  // starttime 22 and rss 24 (proc(5)).
  size_t close = text->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  const char* p = text->c_str() + close + 1;
  unsigned long long field[25] = {};
  for (int n = 3; n <= 24; ++n) {
    while (*p == ' ') ++p;
    if (*p == '\0') return std::nullopt;
    if (n == 3) {
      ++p;  // the state letter
    } else {
      // strtoull takes the negative fields (priority, nice) too; their values are not used.
      char* end = nullptr;
      field[n] = std::strtoull(p, &end, 10);
      if (end == p) return std::nullopt;
      p = end;
    }
  }
  static const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  ProcessStats st;
  st.cpu_seconds = static_cast<double>(field[14] + field[15]) / ticks;
  st.start_time_seconds = bootTimeSeconds() + static_cast<double>(field[22]) / ticks;
  st.resident_bytes = field[24] * page;
  return st;
}

uint64_t residentBytes(int pid) {
  std::optional<ProcessStats> st = readProcessStats(pid);
  return st ? st->resident_bytes : 0;
}

FdStats readOwnFdStats() {
  FdStats fds;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(dir)) {
      if (e->d_name[0] != '.') ++fds.open;
    }
    ::closedir(dir);
    if (fds.open > 0) --fds.open;  // the descriptor opendir itself holds
  }
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    fds.max = limit.rlim_cur;
  }
  return fds;
}

void writeProcessMetrics(PrometheusWriter& out) {
  std::optional<ProcessStats> self = readProcessStats(static_cast<int>(::getpid()));
  FdStats fds = readOwnFdStats();
  if (self) {
    out.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    out.sample("process_cpu_seconds_total", {}, self->cpu_seconds);
    out.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    out.sample("process_resident_memory_bytes", {}, self->resident_bytes);
    out.family("process_start_time_seconds", "gauge",
               "Start time of the process since unix epoch in seconds.");
    out.sample("process_start_time_seconds", {}, self->start_time_seconds);
  }
  out.family("process_open_fds", "gauge", "Number of open file descriptors.");
  out.sample("process_open_fds", {}, fds.open);
  if (fds.max > 0) {
    out.family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
    out.sample("process_max_fds", {}, fds.max);
  }
}

}  // namespace loopguard::metrics
