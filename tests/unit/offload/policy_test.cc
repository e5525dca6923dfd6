#include "offload/policy.h"

#include <gtest/gtest.h>

#include <random>
#include <signal.h>

namespace loopguard::offload {
namespace {

using std::chrono::milliseconds;

config::Backoff limits(int64_t initial, int64_t max) {
  config::Backoff b;
  b.initial = milliseconds(initial);
  b.max = milliseconds(max);
  return b;
}

TEST(RestartBackoff, DoublesFromInitialUpToMax) {
  RestartBackoff b(limits(100, 1000));
  EXPECT_EQ(b.next(), 100u);
  EXPECT_EQ(b.next(), 200u);
  EXPECT_EQ(b.next(), 400u);
  EXPECT_EQ(b.next(), 800u);
  EXPECT_EQ(b.next(), 1000u);
  EXPECT_EQ(b.next(), 1000u);
  EXPECT_EQ(b.failures(), 6u);
}

TEST(RestartBackoff, ResetStartsAgainAtInitial) {
  RestartBackoff b(limits(50, 400));
  b.next();
  b.next();
  b.reset();
  EXPECT_EQ(b.next(), 50u);
}

TEST(RestartBackoff, ACrashLoopOfAnyLengthStaysAtMaxWithoutOverflow) {
  RestartBackoff b(limits(100, 10'000));
  uint64_t last = 0;
  for (int i = 0; i < 100'000; ++i) last = b.next();
  EXPECT_EQ(last, 10'000u);
}

TEST(RestartBackoff, ZeroInitialStillGrows) {
  RestartBackoff b(limits(0, 8));
  EXPECT_EQ(b.next(), 0u);
  EXPECT_EQ(b.next(), 1u);
  EXPECT_EQ(b.next(), 2u);
}

TEST(RestartBackoff, BoundsTheRestartsOfACrashLoop) {
  // With the defaults (100 ms doubling to 10 s), a command that can never start is restarted
  // at most ~14 times in the first minute: no spinning.
  RestartBackoff b(limits(100, 10'000));
  uint64_t elapsed = 0;
  int starts = 0;
  while (elapsed < 60'000) {
    elapsed += b.next();
    ++starts;
  }
  EXPECT_LE(starts, 14);
}

TEST(RecycleThreshold, ZeroMeansNever) { EXPECT_EQ(recycleThreshold(0, 12345), 0u); }

TEST(RecycleThreshold, AddsAJitterOfUpToTenPercent) {
  std::mt19937_64 rng(42);
  uint64_t lo = UINT64_MAX;
  uint64_t hi = 0;
  for (int i = 0; i < 10'000; ++i) {
    uint64_t t = recycleThreshold(1000, rng());
    lo = std::min(lo, t);
    hi = std::max(hi, t);
  }
  EXPECT_EQ(lo, 1000u);
  EXPECT_EQ(hi, 1100u);  // the whole range is reached: workers do spread out
}

TEST(RecycleThreshold, SmallLimitsHaveLittleOrNoJitter) {
  for (uint64_t r = 0; r < 100; ++r) EXPECT_EQ(recycleThreshold(5, r), 5u);
  for (uint64_t r = 0; r < 100; ++r) {
    uint64_t t = recycleThreshold(10, r);
    EXPECT_TRUE(t == 10 || t == 11) << t;
  }
}

TEST(RecycleThreshold, HugeLimitsDoNotOverflow) {
  EXPECT_EQ(recycleThreshold(UINT64_MAX, UINT64_MAX - 1), UINT64_MAX);
}

TEST(ClassifyExit, CleanExitIsExitEverythingElseIsACrash) {
  EXPECT_EQ(classifyExit({0, 0}), RestartReason::Exit);
  EXPECT_EQ(classifyExit({3, 0}), RestartReason::Crash);
  EXPECT_EQ(classifyExit({0, SIGSEGV}), RestartReason::Crash);
  EXPECT_EQ(classifyExit({0, SIGKILL}), RestartReason::Crash);
}

TEST(DescribeExit, NamesCodesAndSignals) {
  EXPECT_EQ(describeExit({3, 0}), "exit code 3");
  EXPECT_EQ(describeExit({0, SIGKILL}), "signal 9 (SIGKILL)");
  EXPECT_EQ(describeExit({0, SIGSEGV}), "signal 11 (SIGSEGV)");
}

TEST(RestartReasonName, MatchesTheMetricLabels) {
  EXPECT_STREQ(restartReasonName(RestartReason::Exit), "exit");
  EXPECT_STREQ(restartReasonName(RestartReason::Crash), "crash");
  EXPECT_STREQ(restartReasonName(RestartReason::Timeout), "timeout");
  EXPECT_STREQ(restartReasonName(RestartReason::MaxRequests), "max_requests");
  EXPECT_STREQ(restartReasonName(RestartReason::MaxRss), "max_rss");
  EXPECT_STREQ(restartReasonName(RestartReason::NotReady), "not_ready");
}

TEST(Substitute, ReplacesEveryPlaceholder) {
  Substitutions s;
  s.socket = "/run/lg/cpu.0.1.sock";
  s.port = "41234";
  s.index = "3";
  s.pid = "999";
  EXPECT_EQ(substitute("--uds={socket}", s), "--uds=/run/lg/cpu.0.1.sock");
  EXPECT_EQ(substitute("{port}", s), "41234");
  EXPECT_EQ(substitute("w{index}-{index}", s), "w3-3");
  EXPECT_EQ(substitute("py-spy dump --pid {pid}", s), "py-spy dump --pid 999");
}

TEST(Substitute, LeavesOtherBracesAlone) {
  Substitutions s;
  s.index = "1";
  EXPECT_EQ(substitute("{}", s), "{}");
  EXPECT_EQ(substitute("{unknown} {index", s), "{unknown} {index");
  EXPECT_EQ(substitute("{{index}}", s), "{1}");
  EXPECT_EQ(substitute("", s), "");
}

}  // namespace
}  // namespace loopguard::offload
