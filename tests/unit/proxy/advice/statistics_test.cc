// The advisor's statistics on simulated event loops (advice_sim.h), whose answer is known by
// construction: endpoints that compute on the loop must be flagged, endpoints that wait must
// not, with and without stalls nobody caused, in one process and split over two.
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "proxy/advice/evidence.h"
#include "proxy/advice/process_stream.h"
#include "proxy/advice/verdict.h"
#include "tests/unit/support/advice_sim.h"

namespace loopguard::advice {
namespace {

constexpr EndpointId kIo = 0, kCpu = 1, kSlow = 2, kSmall = 3, kLock = 4;

std::vector<sim::Endpoint> mixedApp(double cpu_ms = 10) {
  return {{kIo, 60, 0, 20}, {kCpu, 4, cpu_ms, 0}, {kSlow, 10, 0, 150}, {kSmall, 15, 0, 1}};
}

struct Judged {
  Evidence evidence;
  Verdict verdict;
};

std::map<EndpointId, Judged> judge(const std::vector<std::vector<Completion>>& per_process,
                                   size_t endpoints, const StreamParams& sp = {},
                                   const VerdictParams& vp = {}) {
  std::vector<std::unique_ptr<ProcessStream>> streams;
  std::vector<std::vector<double>> backgrounds;
  std::vector<StreamView> views;
  int64_t end = 0;
  for (const auto& completions : per_process) {
    streams.push_back(std::make_unique<ProcessStream>(sp));
    for (const Completion& c : completions) {
      streams.back()->add(c);
      end = std::max(end, c.head_ns);
    }
  }
  backgrounds.reserve(streams.size());
  for (auto& s : streams) {
    s->settle(end + 1'000'000'000);
    backgrounds.push_back(streamBackground(*s, endpoints, vp));
    views.push_back(StreamView{s.get(), &backgrounds.back()});
  }
  std::map<EndpointId, Judged> out;
  for (size_t e = 0; e < endpoints; ++e) {
    Judged j;
    j.evidence = gatherEvidence(views, static_cast<EndpointId>(e), end, false);
    j.verdict = decide(j.evidence, vp);
    out[static_cast<EndpointId>(e)] = j;
  }
  return out;
}

double blamedRate(const Evidence& e) {
  return e.opportunities ? static_cast<double>(e.blamed) / static_cast<double>(e.opportunities) : 0;
}

TEST(AdviceStatistics, FlagsTheEndpointThatComputesOnTheLoopAndOnlyIt) {
  auto r = judge({sim::simulate(mixedApp(), {30, 0, 0, 7})}, 4);
  EXPECT_EQ(r[kCpu].verdict.kind, VerdictKind::BlocksLoop);
  EXPECT_GT(blamedRate(r[kCpu].evidence), 0.3);
  for (EndpointId e : {kIo, kSlow, kSmall}) {
    EXPECT_EQ(r[e].verdict.kind, VerdictKind::Ok) << e;
    EXPECT_LT(blamedRate(r[e].evidence), 0.05) << e;
  }
  // The estimate of the loop time one request holds: its 10 ms.
  EXPECT_NEAR(r[kCpu].verdict.blocking_ms, 10, 2.5);
  // 4 requests/s x 10 ms = 4% of the loop.
  EXPECT_NEAR(r[kCpu].verdict.loop_share, 0.04, 0.015);
  EXPECT_GE(r[kCpu].verdict.confidence, 0.99);
  EXPECT_STREQ(r[kCpu].verdict.decided_by, "s1");
  EXPECT_EQ(r[kCpu].verdict.s2, Opinion::Blocks);  // its completions follow a silence
}

TEST(AdviceStatistics, StallsNobodyCausedFallOnEveryoneAndFlagNobody) {
  // No blocker at all; 5 stalls of 15 ms a second land on whoever is first after them.
  std::vector<sim::Endpoint> waiters = {{kIo, 60, 0, 20}, {kSlow, 10, 0, 150}, {kSmall, 15, 0, 1}};
  auto r = judge({sim::simulate(waiters, {40, 5, 15, 11})}, 4);
  for (EndpointId e : {kIo, kSlow, kSmall}) {
    EXPECT_EQ(r[e].verdict.kind, VerdictKind::Ok) << e;
    EXPECT_GT(r[e].evidence.blamed, 0u) << e;  // they do get blamed, like everyone
  }
}

TEST(AdviceStatistics, BlockerStillFoundAmongStallsNobodyCaused) {
  auto r = judge({sim::simulate(mixedApp(12), {40, 5, 15, 3})}, 4);
  EXPECT_EQ(r[kCpu].verdict.kind, VerdictKind::BlocksLoop);
  for (EndpointId e : {kIo, kSlow, kSmall}) EXPECT_EQ(r[e].verdict.kind, VerdictKind::Ok) << e;
}

TEST(AdviceStatistics, SelfSerialisingWaiterIsNotABlocker) {
  // A lock held across an await: its requests queue behind each other, never behind the loop.
  // Modelled as a waiter whose waits are long under its own load; it must not look blocking.
  std::vector<sim::Endpoint> app = {{kIo, 60, 0, 20}, {kLock, 30, 0, 10}, {kCpu, 4, 10, 0}};
  auto r = judge({sim::simulate(app, {30, 0, 0, 5})}, 5);
  EXPECT_EQ(r[kLock].verdict.kind, VerdictKind::Ok);
  EXPECT_EQ(r[kCpu].verdict.kind, VerdictKind::BlocksLoop);
}

TEST(AdviceStatistics, TooFewSamplesIsNotEnoughData) {
  auto r = judge({sim::simulate({{kIo, 60, 0, 20}, {kCpu, 0.5, 10, 0}}, {20, 0, 0, 1})}, 2);
  ASSERT_LT(r[kCpu].evidence.samples, 30u);
  EXPECT_EQ(r[kCpu].verdict.kind, VerdictKind::NotEnoughData);
  EXPECT_EQ(r[kIo].verdict.kind, VerdictKind::Ok);
}

TEST(AdviceStatistics, BlockerWithoutVictimsIsNotEnoughDataWithoutTheProbe) {
  // Alone on its process, a blocker holds nobody: the passive statistics cannot judge it.
  auto r = judge({sim::simulate({{kCpu, 5, 10, 0}}, {20, 0, 0, 1})}, 2);
  ASSERT_GE(r[kCpu].evidence.samples, 30u);
  EXPECT_EQ(r[kCpu].verdict.kind, VerdictKind::NotEnoughData);
}

TEST(AdviceStatistics, ShortBlocksAreBelowWhatS1CanSee) {
  // 1.5 ms computations hold their victims less than the 2 ms "held" threshold: never flagged.
  auto r = judge({sim::simulate(mixedApp(1.5), {30, 0, 0, 9})}, 4);
  EXPECT_NE(r[kCpu].verdict.kind, VerdictKind::BlocksLoop);
}

TEST(AdviceStatistics, TwoProcessesEachKeepTheirOwnStream) {
  // The same app on two processes, each with half the traffic; the blocker runs on both.
  auto half = mixedApp();
  for (auto& e : half) e.rate_per_s /= 2;
  auto a = sim::simulate(half, {40, 0, 0, 21});
  auto b = sim::simulate(half, {40, 0, 0, 22});
  auto r = judge({a, b}, 4);
  EXPECT_EQ(r[kCpu].verdict.kind, VerdictKind::BlocksLoop);
  for (EndpointId e : {kIo, kSlow, kSmall}) EXPECT_EQ(r[e].verdict.kind, VerdictKind::Ok) << e;
  // Each process on its own flags it too.
  EXPECT_EQ(judge({a}, 4)[kCpu].verdict.kind, VerdictKind::BlocksLoop);
}

TEST(AdviceStatistics, HeldHeadPassesTheBlameToTheUnheldReplyBehindIt) {
  // A GIL-holding thread: the victims complete first, the blocker's reply right after them.
  ProcessStream s;
  const int64_t ms = kNsPerMs;
  int64_t t = 0;
  // Baselines: the victim endpoint answers in 20 ms, the blocker in 10 ms.
  for (int i = 0; i < 10; ++i, t += 50 * ms) {
    s.add(Completion{t, t + 20 * ms, kIo, true, true});
    s.add(Completion{t + 25 * ms, t + 35 * ms, kCpu, true, true});
  }
  // A stall: two victims held 8 ms complete, then the blocker (not held) 0.3 ms later.
  t += 100 * ms;
  s.add(Completion{t - 28 * ms, t, kIo, true, true});
  s.add(Completion{t - 27 * ms, t + ms / 5, kIo, true, true});
  s.add(Completion{t - 10 * ms, t + ms / 2, kCpu, true, true});
  s.settle(t + 10 * ms);
  EXPECT_EQ(s.flush().counters(kCpu)->blamed, 1u);
}

TEST(AdviceStatistics, ProbeLagSeparatesBlockersFromWaitersUnderPacedTraffic) {
  // Paced arrivals: the blocker's stalls may never cover a victim's due time, but probes sent
  // during its tails wait, and probes during waiters' tails do not.
  std::vector<sim::Endpoint> app = {{kIo, 40, 0, 20, true}, {kCpu, 4, 12, 0, true},
                                    {kSlow, 8, 0, 150, true}};
  std::vector<int64_t> probe_times;
  for (int64_t t = 3 * kNsPerMs; t < 30'000 * kNsPerMs; t += 15 * kNsPerMs) probe_times.push_back(t);
  std::vector<sim::Probe> probes;
  auto completions = sim::simulate(app, {30, 0, 0, 4}, probe_times, &probes);
  // Feed requests and probes to one stream in time order.
  struct Ev {
    int64_t t;
    int kind;  // 0 probe sent, 1 probe head, 2 completion
    size_t i;
  };
  std::vector<Ev> events;
  for (size_t i = 0; i < probes.size(); ++i) {
    events.push_back({probes[i].sent_ns, 0, i});
    events.push_back({probes[i].head_ns, 1, i});
  }
  for (size_t i = 0; i < completions.size(); ++i) events.push_back({completions[i].head_ns, 2, i});
  std::stable_sort(events.begin(), events.end(), [](const Ev& a, const Ev& b) { return a.t < b.t; });
  ProcessStream s;
  for (const Ev& ev : events) {
    if (ev.kind == 0) s.probeSent(ev.t);
    if (ev.kind == 1) s.probeDone(ev.t);
    if (ev.kind == 2) s.add(completions[ev.i]);
  }
  s.settle(events.back().t + kNsPerMs);
  std::vector<double> bg = streamBackground(s, 3, {});
  ProbePool pool = streamProbePool(s, 3, {});
  EXPECT_FALSE(pool.quiet[kCpu]);  // it lags its probes: not part of anyone's background
  EXPECT_TRUE(pool.quiet[kIo] && pool.quiet[kSlow]);
  std::vector<StreamView> views{{&s, &bg, &pool}};
  Evidence cpu = gatherEvidence(views, kCpu, events.back().t, true);
  Evidence io = gatherEvidence(views, kIo, events.back().t, true);
  Evidence slow = gatherEvidence(views, kSlow, events.back().t, true);
  Verdict vc = decide(cpu, {}), vi = decide(io, {}), vs = decide(slow, {});
  EXPECT_EQ(vc.s3, Opinion::Blocks);
  EXPECT_EQ(vc.kind, VerdictKind::BlocksLoop);
  EXPECT_STREQ(vc.decided_by, "s3");
  EXPECT_NEAR(vc.blocking_ms, 12, 4);
  EXPECT_EQ(vi.s3, Opinion::Ok);
  EXPECT_EQ(vi.kind, VerdictKind::Ok);
  EXPECT_EQ(vs.kind, VerdictKind::Ok);
  EXPECT_GT(static_cast<double>(cpu.probes_lagged) / static_cast<double>(cpu.probes), 0.7);
  EXPECT_LT(static_cast<double>(io.probes_lagged) / static_cast<double>(io.probes), 0.3);
  // Each one's background is the others' quiet pairs.
  const ProbeCounters& io_c = *s.probes().counters(kIo);
  const ProbeCounters& slow_c = *s.probes().counters(kSlow);
  EXPECT_EQ(cpu.background_probes, io_c.probes + slow_c.probes);
  EXPECT_EQ(io.background_probes, slow_c.probes);
  EXPECT_EQ(io.background_lagged, slow_c.lagged);
}

}  // namespace
}  // namespace loopguard::advice
