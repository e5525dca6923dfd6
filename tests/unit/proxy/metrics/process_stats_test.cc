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
  // Burn 150 ms of CPU (by the process's own CPU clock, so a loaded machine only makes it take
  // longer): /proc's counter moves by as much, to its 10 ms ticks.
  auto cpu_now = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  };
  double start = cpu_now();
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  volatile uint64_t x = 0;
  while (cpu_now() - start < 0.150 && std::chrono::steady_clock::now() < give_up) x = x + 1;
  double burnt = cpu_now() - start;
  auto after = readProcessStats(getpid());
  ASSERT_TRUE(after);
  EXPECT_NEAR(after->cpu_seconds - before->cpu_seconds, burnt, 0.05);
  EXPECT_GE(burnt, 0.150);
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
