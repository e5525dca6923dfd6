#include <gtest/gtest.h>

#include <string>

#include "proxy/advice/verdict.h"

namespace loopguard::advice {
namespace {

TEST(AdviceVerdict, BinomialTails) {
  EXPECT_NEAR(binomialUpperTail(10, 0, 0.3), 1.0, 1e-12);
  EXPECT_NEAR(binomialUpperTail(10, 11, 0.3), 0.0, 1e-12);
  EXPECT_NEAR(binomialUpperTail(10, 10, 0.5), 1.0 / 1024, 1e-9);
  EXPECT_NEAR(binomialUpperTail(10, 5, 0.5), 638.0 / 1024, 1e-9);
  EXPECT_NEAR(binomialLowerTail(10, 4, 0.5), 386.0 / 1024, 1e-9);
  EXPECT_NEAR(binomialUpperTail(1000, 150, 0.1), 1.0 - 0.999999, 5e-6);  // ~5 sigma out
  EXPECT_NEAR(normalCdf(0), 0.5, 1e-12);
  EXPECT_NEAR(normalCdf(1.96), 0.975, 1e-3);
}

Evidence blocker() {
  Evidence e;
  e.samples = 120;
  e.process_s = 30;
  e.opportunities = 100;
  e.blamed = 45;
  e.expected_blamed = 8;  // background 0.08
  e.block_ms = 14;
  e.base_ms = 11;
  e.victim_rate = 80;
  e.silence_n = 110;
  e.silence_observed = 105;
  e.silence_expected = 66;
  e.silence_variance = 26;
  return e;
}

TEST(AdviceVerdict, S1DecidesAndEstimatesTheStallFromTheFastestResponse) {
  Verdict v = decide(blocker(), {});
  EXPECT_EQ(v.kind, VerdictKind::BlocksLoop);
  EXPECT_STREQ(v.decided_by, "s1");
  EXPECT_EQ(v.s2, Opinion::Blocks);
  EXPECT_DOUBLE_EQ(v.blocking_ms, 11);  // min(blamed stalls' median, fastest response)
  EXPECT_NEAR(v.loop_share, 120.0 / 30 * 11 / 1000, 1e-9);
  EXPECT_GT(v.confidence, 0.99);
  EXPECT_TRUE(v.notes.empty());
}

TEST(AdviceVerdict, NotEnoughSamples) {
  Evidence e = blocker();
  e.samples = 29;
  Verdict v = decide(e, {});
  EXPECT_EQ(v.kind, VerdictKind::NotEnoughData);
  EXPECT_EQ(v.blocking_ms, 0);
  ASSERT_FALSE(v.notes.empty());
  EXPECT_NE(v.notes[0].find("29 of the 30"), std::string::npos);
}

TEST(AdviceVerdict, CaughtByStallsRatherThanCausingThem) {
  // Blamed well above the background, but far less than stalls of its length would make it.
  Evidence e = blocker();
  e.blamed = 25;
  e.base_ms = 30;
  e.block_ms = 30;  // a 30 ms stall would have caught a victim ~90% of the time
  Verdict v = decide(e, {});
  EXPECT_EQ(v.kind, VerdictKind::Ok);
  EXPECT_EQ(v.s1, Opinion::Ok);
  ASSERT_FALSE(v.notes.empty());
  EXPECT_NE(v.notes[0].find("caught by them, not their cause"), std::string::npos);
}

TEST(AdviceVerdict, StallsShorterThanWhatCanBeSeenAreNotBlocking) {
  Evidence e = blocker();
  e.base_ms = 2.5;  // no request of it can hold the loop for more than 2.5 ms
  EXPECT_NE(decide(e, {}).kind, VerdictKind::BlocksLoop);
}

TEST(AdviceVerdict, DisagreementIsSaid) {
  Evidence e = blocker();
  e.silence_observed = 70;  // S2 sees no extra silence
  Verdict v = decide(e, {});
  EXPECT_EQ(v.kind, VerdictKind::BlocksLoop);
  EXPECT_EQ(v.s2, Opinion::Ok);
  ASSERT_EQ(v.notes.size(), 1u);
  EXPECT_NE(v.notes[0].find("S2 disagrees"), std::string::npos);
}

TEST(AdviceVerdict, TheProbeDecidesWhenItHasEnough) {
  Evidence e = blocker();
  e.blamed = 6;  // paced traffic: S1 saw nothing
  e.probing = true;
  e.probes = 40;
  e.probes_lagged = 32;
  e.all_probes = 600;
  e.all_probes_lagged = 120;
  Verdict v = decide(e, {});
  EXPECT_EQ(v.kind, VerdictKind::BlocksLoop);
  EXPECT_STREQ(v.decided_by, "s3");
  EXPECT_NEAR(v.blocking_ms, 0.8 * 11, 1e-9);
  EXPECT_EQ(v.s1, Opinion::Ok);
  bool said = false;
  for (const auto& n : v.notes) said |= n.find("S1 disagrees") != std::string::npos;
  EXPECT_TRUE(said);

  e.probes_lagged = 8;  // its tails lag probes as often as any probe lags
  e.blamed = 45;        // while S1 blames it: the probe still decides
  v = decide(e, {});
  EXPECT_EQ(v.kind, VerdictKind::Ok);
  EXPECT_STREQ(v.decided_by, "s3");
}

TEST(AdviceVerdict, TheProbeCallsOkOnlyOnEvidenceAgainstBlocking) {
  // A GIL-holding thread on a starved machine: its tails lag 64% of 70 probes while half of the
  // others lag too. Not significant yet, but far from evidence that it only waits: unclear
  // (so S1, or more probes, decide), never ok.
  Evidence e = blocker();
  e.blamed = 6;
  e.probing = true;
  e.probes = 70;
  e.probes_lagged = 45;
  e.all_probes = 1070;
  e.all_probes_lagged = 535;
  Verdict v = decide(e, {});
  EXPECT_EQ(v.s3, Opinion::Unclear);
  EXPECT_NEAR(probeBackground(e), 0.5, 1e-9);

  // Its tails lag far more often than the probes do: blocking.
  e.probes = 80;
  e.probes_lagged = 60;
  e.all_probes = 1080;
  e.all_probes_lagged = 270;
  v = decide(e, {});
  EXPECT_EQ(v.s3, Opinion::Blocks);
  EXPECT_NEAR(probeBackground(e), 0.25, 1e-9);

  // A waiter whose tails lag like everything else on that machine: ok, and sure of it.
  e.probes_lagged = 20;
  v = decide(e, {});
  EXPECT_EQ(v.s3, Opinion::Ok);
  EXPECT_GT(v.confidence, 0.99);
}

TEST(AdviceVerdict, TheProbesBackgroundIsTheOtherEndpointsNotEveryProbe) {
  // The blocker is the last suspect: probes go out only while it is in flight, so 81% of all
  // probes lag (during its stretched requests), but only 10 fell in its tails. Against every
  // probe it could never stand out; against the other endpoints' probes (37%) it does.
  Evidence e = blocker();
  e.blamed = 6;
  e.probing = true;
  e.probes = 10;
  e.probes_lagged = 10;
  e.all_probes = 400;
  e.all_probes_lagged = 324;
  Verdict without_pool = decide(e, {});
  EXPECT_NE(without_pool.s3, Opinion::Blocks);
  e.background_probes = 300;
  e.background_lagged = 111;
  EXPECT_NEAR(probeBackground(e), 0.37, 1e-9);
  Verdict v = decide(e, {});
  EXPECT_EQ(v.s3, Opinion::Blocks);
  EXPECT_EQ(v.kind, VerdictKind::BlocksLoop);
}

TEST(AdviceVerdict, BackgroundIgnoresWhatStandsOut) {
  FlushCounters waiter, blocker_c;
  waiter.opportunities = 1000;
  waiter.blamed = 50;
  blocker_c.opportunities = 100;
  blocker_c.blamed = 50;
  std::vector<double> bg = backgroundRates({&waiter, &blocker_c, nullptr}, {});
  EXPECT_NEAR(bg[0], 0.05, 1e-9);
  EXPECT_NEAR(bg[1], 0.05, 1e-9);
  // With nothing blamed, the floor.
  FlushCounters quiet;
  quiet.opportunities = 100;
  EXPECT_NEAR(backgroundRates({&quiet}, {})[0], 0.01, 1e-9);
}

}  // namespace
}  // namespace loopguard::advice
