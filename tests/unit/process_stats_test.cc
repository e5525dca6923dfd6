// /proc readers behind process_* and the per-worker metrics, on this test process and a child.
#include "proxy/metrics/process_stats.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <string>

namespace loopguard::metrics {
namespace {

TEST(ProcessStats, ReadsThisProcess) {
  auto before = readProcessStats(getpid());
  ASSERT_TRUE(before);
  EXPECT_GT(before->resident_bytes, 1024u * 1024);
  EXPECT_EQ(residentBytes(getpid()), readProcessStats(getpid())->resident_bytes);
  // Started before now, and (for a test run) within the last day.
  double now = static_cast<double>(time(nullptr));
  EXPECT_LE(before->start_time_seconds, now + 1);
  EXPECT_GT(before->start_time_seconds, now - 86400);
  // Burn ~150 ms of CPU: the counter moves by about that much (ticks are 10 ms).
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(150);
  volatile uint64_t x = 0;
  while (std::chrono::steady_clock::now() < until) x = x + 1;
  auto after = readProcessStats(getpid());
  ASSERT_TRUE(after);
  EXPECT_GE(after->cpu_seconds - before->cpu_seconds, 0.05);
}

TEST(ProcessStats, AGoneProcessHasNoStats) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_FALSE(readProcessStats(child));
  EXPECT_EQ(residentBytes(child), 0u);
  EXPECT_FALSE(readProcessStats(0));
  EXPECT_FALSE(readProcessStats(-1));
}

TEST(ProcessStats, CountsOwnDescriptors) {
  FdStats before = readOwnFdStats();
  EXPECT_GT(before.open, 2u);  // stdin, stdout, stderr at least
  EXPECT_GE(before.max, before.open);
  int fds[3];
  for (int& fd : fds) fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(readOwnFdStats().open, before.open + 3);
  for (int fd : fds) close(fd);
  EXPECT_EQ(readOwnFdStats().open, before.open);
}

TEST(ProcessStats, WritesTheStandardFamilies) {
  std::string text;
  PrometheusWriter w(text);
  writeProcessMetrics(w);
  for (const char* name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                           "process_open_fds ", "process_max_fds ", "process_start_time_seconds "}) {
    EXPECT_NE(text.find(std::string("\n") + name), std::string::npos) << name << "\n" << text;
  }
  // The start time keeps its fraction (seconds since the epoch need more than 9 digits).
  size_t at = text.find("\nprocess_start_time_seconds ");
  std::string value = text.substr(at + 28, text.find('\n', at + 1) - at - 28);
  EXPECT_EQ(value.find('e'), std::string::npos) << value;
}

}  // namespace
}  // namespace loopguard::metrics
