// From evidence to a verdict: `blocks_loop`, `ok` or `not_enough_data`, with the blocking time
// per request, the share of the process's time, a confidence, and what each statistic said
// (with a note wherever they disagree). Pure; tested in tests/unit/proxy/advice/verdict_test.cc.
//
// S1 decides, unless the probe (S3) has enough rows, which then decides: it is not fooled by
// paced traffic. S2 only corroborates: where it (or S1, when S3 decides) contradicts the
// deciding statistic, a note says so.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proxy/advice/flush_attribution.h"

namespace loopguard::advice {

// What the statistics saw of one endpoint, summed over the processes that served it.
struct Evidence {
  uint64_t samples = 0;     // its completions on app processes
  double process_s = 0;     // process-seconds they were observed over (for loop_share)
  // S1
  uint64_t opportunities = 0;    // completions with another request of the process in flight
  uint64_t blamed = 0;           // stalls blamed on it
  double expected_blamed = 0;    // what its processes' background blame rate predicts
  double block_ms = 0;           // median stall of its blamed bursts
  double victim_rate = 0;        // mean rate (1/s) other requests completed at, at opportunities
  uint64_t victims = 0;
  // S2
  uint64_t silence_n = 0;
  double silence_observed = 0;
  double silence_expected = 0;
  double silence_variance = 0;
  // S3
  bool probing = false;
  uint64_t probes = 0;          // probes sent within its tails
  uint64_t probes_lagged = 0;   // of those, answered late
  double probe_lag_ms = 0;
  uint64_t all_probes = 0;      // every probe of its processes
  uint64_t all_probes_lagged = 0;
  uint64_t background_probes = 0;  // the other endpoints' pairs that do not look blocking
  uint64_t background_lagged = 0;  // (ProbePool); none: the background is every probe
  double base_ms = 0;  // its minimal latency
};

enum class VerdictKind { NotEnoughData, Ok, BlocksLoop };
const char* verdictName(VerdictKind kind);

// One statistic's opinion.
enum class Opinion { NoData, Ok, Unclear, Blocks };
const char* opinionName(Opinion opinion);

struct VerdictParams {
  uint64_t min_samples = 30;
  // S1: blamed significantly more often than the background (one-sided binomial p below this),
  // by at least this much, on at least this many stalls, each held_ms + s1_min_block_ms long.
  double s1_p_value = 1e-3;
  double s1_p_value_corroborated = 1e-2;  // when S2 supports it
  double s1_min_excess = 0.05;
  double s1_min_ratio = 1.5;
  uint64_t s1_min_blamed = 5;
  double s1_min_block_ms = 1.0;
  // A stall of `block_ms` catches a victim with probability 1 - exp(-victim_rate * (block -
  // held)); an endpoint that causes its stalls is blamed about that often, one that merely
  // happens to complete first after stalls it did not cause (the CPU taken away, a GC) far less.
  // Blocking needs at least this fraction of that expectation.
  double s1_min_explained = 0.35;
  double held_ms = 2.0;
  // S2: a z score above this supports blocking; a silence rate within this of the expected
  // one contradicts it.
  double s2_z = 3.1;
  double s2_flat = 0.1;
  uint64_t s2_min_n = 20;
  // S3: probes needed in its tails; a lagged share at or above `blocks`, significantly above
  // the background (probeBackground; s1_p_value), with at least s1_min_block_ms
  // of loop time per request, says blocks; below `ok`, or significantly below what a blocker
  // lags, ok; in between, unclear.
  uint64_t s3_min_probes = 20;         // for ok
  uint64_t s3_min_probes_blocks = 10;  // for blocks (with the significance above)
  double s3_blocks = 0.5;
  double s3_ok = 0.4;
  // ...or at least this sure that it lags fewer probes than a blocker would.
  double s3_ok_confidence = 0.99;
};

struct Verdict {
  VerdictKind kind = VerdictKind::NotEnoughData;
  double blocking_ms = 0;
  double loop_share = 0;
  double confidence = 0;
  Opinion s1 = Opinion::NoData;
  Opinion s2 = Opinion::NoData;
  Opinion s3 = Opinion::NoData;
  const char* decided_by = "";  // "s1" | "s3" | ""
  std::vector<std::string> notes;
};

Verdict decide(const Evidence& e, const VerdictParams& params);

// S1's estimate of the loop time one request holds: the median stall of its blamed bursts,
// but never more than its fastest response took.
double stallMs(const Evidence& e);

// The background blame rate of each endpoint of one process: the rate at which the endpoints
// that do not stand out (iterated) head stalls. counters[i] may be null.
std::vector<double> backgroundRates(const std::vector<const FlushCounters*>& counters,
                                    const VerdictParams& params);

// S3's background: the lagged share of the other, non-blocking endpoints' probes (ProbePool),
// or of every probe of its processes where there are none.
double probeBackground(const Evidence& e);

// P(X >= k) and P(X <= k) for X ~ Binomial(n, p).
double binomialUpperTail(uint64_t n, uint64_t k, double p);
double binomialLowerTail(uint64_t n, uint64_t k, double p);
double normalCdf(double z);

}  // namespace loopguard::advice
