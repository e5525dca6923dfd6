#include "proxy/advice/verdict.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace loopguard::advice {

const char* verdictName(VerdictKind kind) {
  switch (kind) {
    case VerdictKind::NotEnoughData:
      return "not_enough_data";
    case VerdictKind::Ok:
      return "ok";
    case VerdictKind::BlocksLoop:
      return "blocks_loop";
  }
  return "not_enough_data";
}

const char* opinionName(Opinion opinion) {
  switch (opinion) {
    case Opinion::NoData:
      return "no_data";
    case Opinion::Ok:
      return "ok";
    case Opinion::Unclear:
      return "unclear";
    case Opinion::Blocks:
      return "blocks";
  }
  return "no_data";
}

// ---- distributions --------------------------------------------------------------------------

namespace {

// Continued fraction of the regularized incomplete beta function (modified Lentz).
double betaContinuedFraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 300; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < 1e-12) break;
  }
  return h;
}

// I_x(a, b).
double regularizedBeta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) +
                                a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * betaContinuedFraction(a, b, x) / a;
  return 1 - front * betaContinuedFraction(b, a, 1 - x) / b;
}

std::string format(const char* fmt, double a, double b = 0, double c = 0, double d = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, fmt, a, b, c, d);
  return buf;
}

}  // namespace

double binomialUpperTail(uint64_t n, uint64_t k, double p) {
  if (k == 0) return 1;
  if (k > n) return 0;
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  return regularizedBeta(static_cast<double>(k), static_cast<double>(n - k + 1), p);
}

double binomialLowerTail(uint64_t n, uint64_t k, double p) {
  if (k >= n) return 1;
  return 1 - binomialUpperTail(n, k + 1, p);
}

double normalCdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

// ---- background ---------------------------------------------------------------------------

std::vector<double> backgroundRates(const std::vector<const FlushCounters*>& counters,
                                    const VerdictParams& params) {
  constexpr double kFloor = 0.01;  // never assume stalls are rarer than this
  const size_t n = counters.size();
  std::vector<bool> stands_out(n, false);
  double blamed = 0, opportunities = 0;
  for (int round = 0; round < 5; ++round) {
    blamed = opportunities = 0;
    for (size_t i = 0; i < n; ++i) {
      if (counters[i] == nullptr || stands_out[i]) continue;
      blamed += static_cast<double>(counters[i]->blamed);
      opportunities += static_cast<double>(counters[i]->opportunities);
    }
    const double p0 = opportunities > 0 ? std::max(kFloor, blamed / opportunities) : kFloor;
    bool changed = false;
    for (size_t i = 0; i < n; ++i) {
      const FlushCounters* c = counters[i];
      if (c == nullptr) continue;
      const bool out = c->opportunities >= 10 &&
                       binomialUpperTail(c->opportunities, c->blamed, p0) < params.s1_p_value;
      if (out != stands_out[i]) {
        stands_out[i] = out;
        changed = true;
      }
    }
    if (!changed) break;
  }
  // Every endpoint is judged against the pooled rate of those that do not stand out, itself
  // included: leaving it out would judge an endpoint that dominates its process's traffic
  // against the few others, a noisy yardstick.
  const double p0 = opportunities > 0 ? std::max(kFloor, blamed / opportunities) : kFloor;
  return std::vector<double>(n, p0);
}

// ---- the verdict ---------------------------------------------------------------------------

double stallMs(const Evidence& e) {
  return e.base_ms > 0 ? std::min(e.block_ms, e.base_ms) : e.block_ms;
}

namespace {

struct Judged {
  Opinion opinion = Opinion::NoData;
  double confidence = 0;  // in the opinion, when Blocks or Ok
  double explained = 0;   // S1: blamed rate over what a stall of its length predicts
  bool unexplained = false;  // S1: stands out, but far less than its stalls predict
};

// `corroborated`: S2 finds the silences a blocker leaves; then S1 needs less significance.
Judged judgeFlush(const Evidence& e, const VerdictParams& p, bool corroborated) {
  Judged j;
  if (e.opportunities < p.min_samples) return j;
  const double n = static_cast<double>(e.opportunities);
  const double rate = static_cast<double>(e.blamed) / n;
  const double p0 = std::clamp(e.expected_blamed / n, 1e-6, 0.99);
  const double p_value = binomialUpperTail(e.opportunities, e.blamed, p0);
  // No request of it can hold the loop longer than its fastest response takes, so the stall
  // is the smaller of the two (blamed bursts over-estimate it: back-to-back stalls, a CPU
  // taken away meanwhile).
  const double stall = stallMs(e);
  const double expected_if_cause =
      1 - std::exp(-e.victim_rate * std::max(0.0, stall - p.held_ms) / 1000);
  const bool explained = expected_if_cause > 0 && rate >= p.s1_min_explained * expected_if_cause;
  const bool big_enough = rate >= std::max(p.s1_min_ratio * p0, p0 + p.s1_min_excess) &&
                          e.blamed >= p.s1_min_blamed && stall >= p.held_ms + p.s1_min_block_ms;
  j.explained = expected_if_cause > 0 ? rate / expected_if_cause : 0;
  const double alpha = corroborated ? p.s1_p_value_corroborated : p.s1_p_value;
  if (p_value < alpha && big_enough && explained) {
    j.opinion = Opinion::Blocks;
    j.confidence = 1 - p_value;
  } else if (p_value < alpha && big_enough) {
    j.opinion = Opinion::Ok;
    j.unexplained = true;
    j.confidence = std::clamp(1 - j.explained / p.s1_min_explained, 0.5, 0.95);
  } else if (p_value < 10 * p.s1_p_value) {
    j.opinion = Opinion::Unclear;
    j.confidence = 0.5;
  } else {
    // How unlikely this few blamed stalls would be from an endpoint that blocks enough to be
    // flagged (blamed s1_min_excess more often than the background).
    j.opinion = Opinion::Ok;
    j.confidence =
        1 - binomialLowerTail(e.opportunities, e.blamed, std::min(0.99, p0 + p.s1_min_excess));
  }
  return j;
}

Judged judgeSilence(const Evidence& e, const VerdictParams& p) {
  Judged j;
  if (e.silence_n < p.s2_min_n || e.silence_variance <= 0) return j;
  const double n = static_cast<double>(e.silence_n);
  const double z = (e.silence_observed - e.silence_expected) / std::sqrt(e.silence_variance);
  if (z >= p.s2_z) {
    j.opinion = Opinion::Blocks;
    j.confidence = normalCdf(z);
  } else if (e.silence_observed / n <= e.silence_expected / n + p.s2_flat) {
    j.opinion = Opinion::Ok;
    j.confidence = 0.5;
  } else {
    j.opinion = Opinion::Unclear;
  }
  return j;
}

Judged judgeProbe(const Evidence& e, const VerdictParams& p) {
  Judged j;
  // Ten probes can show a blocker (most of them lag); calling an endpoint ok takes more.
  if (!e.probing || e.probes < p.s3_min_probes_blocks || e.all_probes == 0) return j;
  const double rate = static_cast<double>(e.probes_lagged) / static_cast<double>(e.probes);
  const double background = std::clamp(
      static_cast<double>(e.all_probes_lagged) / static_cast<double>(e.all_probes), 0.01, 0.99);
  const double p_value = binomialUpperTail(e.probes, e.probes_lagged, background);
  j.explained = rate;
  if (rate >= p.s3_blocks && p_value < p.s1_p_value && rate * e.base_ms >= p.s1_min_block_ms) {
    j.opinion = Opinion::Blocks;
    j.confidence = 1 - p_value;
  } else if (e.probes < p.s3_min_probes) {
    return j;  // not enough to call it ok yet
  } else if (rate < p.s3_ok || p_value >= 10 * p.s1_p_value || rate * e.base_ms < p.s1_min_block_ms) {
    j.opinion = Opinion::Ok;
    j.confidence = 1 - binomialLowerTail(e.probes, e.probes_lagged, std::max(p.s3_blocks, background));
  } else {
    j.opinion = Opinion::Unclear;
  }
  return j;
}

bool decisive(Opinion o) { return o == Opinion::Blocks || o == Opinion::Ok; }
bool opposite(Opinion a, Opinion b) {
  return (a == Opinion::Blocks && b == Opinion::Ok) || (a == Opinion::Ok && b == Opinion::Blocks);
}

}  // namespace

Verdict decide(const Evidence& e, const VerdictParams& p) {
  Verdict v;
  const Judged s2 = judgeSilence(e, p);
  const Judged s1 = judgeFlush(e, p, s2.opinion == Opinion::Blocks);
  const Judged s3 = judgeProbe(e, p);
  v.s1 = s1.opinion;
  v.s2 = s2.opinion;
  v.s3 = s3.opinion;
  const double rate_s1 =
      e.opportunities > 0 ? static_cast<double>(e.blamed) / static_cast<double>(e.opportunities) : 0;
  const double p0 =
      e.opportunities > 0 ? e.expected_blamed / static_cast<double>(e.opportunities) : 0;

  if (e.samples < p.min_samples) {
    v.notes.push_back(format("%.0f of the %.0f samples needed", static_cast<double>(e.samples),
                             static_cast<double>(p.min_samples)));
    return v;
  }
  Judged deciding;
  if (decisive(s3.opinion)) {
    deciding = s3;
    v.decided_by = "s3";
    // Its tail lags probes in this share: so much of its minimal latency is loop time.
    v.blocking_ms = s3.explained * e.base_ms;
  } else if (s1.opinion == Opinion::Blocks && e.probing && e.all_probes > 0) {
    // The probe is on (and answering) but has not seen enough of this endpoint yet: paced
    // traffic can make S1 blame the wrong endpoint, so a blocking verdict waits for it.
    v.notes.push_back(format("S1 finds it blocking (%.3f stalls per request, background %.3f); "
                             "waiting for the probe to confirm (%.0f probes in its tails so far)",
                             rate_s1, p0, static_cast<double>(e.probes)));
    return v;
  } else if (decisive(s1.opinion) || s1.opinion == Opinion::Unclear) {
    deciding = s1;
    v.decided_by = "s1";
    v.blocking_ms = stallMs(e);
  } else {
    v.notes.push_back(
        e.probing ? "too few overlaps with other requests or probes to judge"
                  : "too few overlaps with other requests to judge (advice.probe: true needs none)");
    return v;
  }

  if (deciding.opinion == Opinion::Blocks) {
    v.kind = VerdictKind::BlocksLoop;
    v.confidence = deciding.confidence;
  } else {
    v.kind = VerdictKind::Ok;
    v.confidence = deciding.opinion == Opinion::Ok ? deciding.confidence : 0.5;
    v.blocking_ms = 0;
    if (s1.unexplained && v.decided_by[1] == '1') {
      v.notes.push_back(format("S1: completes first after stalls more often than the rest (%.3f vs "
                               "%.3f per request), but %.0f%% as often as stalls of %.1f ms would "
                               "make it if it caused them: it is caught by them, not their cause",
                               rate_s1, p0, 100 * s1.explained, stallMs(e)));
    }
    if (deciding.opinion == Opinion::Unclear) {
      v.notes.push_back(format("S1: heads stalls somewhat more often than the rest (%.3f vs %.3f "
                               "per request); not enough to call it blocking",
                               rate_s1, p0));
    }
  }

  // Second opinions.
  const Opinion decider = deciding.opinion;
  const bool s1_decides = v.decided_by[1] == '1';
  if (!s1_decides && opposite(decider, s1.opinion)) {
    v.notes.push_back(format("S1 disagrees: blamed for %.3f stalls per request (background "
                             "%.3f); the probe decides",
                             rate_s1, p0));
  }
  if (s1_decides && s3.opinion == Opinion::Unclear) {
    v.notes.push_back(format("S3 is unclear: %.2f of the probes sent during its tails lagged "
                             "(%.2f of all)",
                             s3.explained,
                             e.all_probes ? static_cast<double>(e.all_probes_lagged) /
                                                static_cast<double>(e.all_probes)
                                          : 0.0));
  }
  if (opposite(decider, s2.opinion)) {
    const double n = static_cast<double>(std::max<uint64_t>(1, e.silence_n));
    v.notes.push_back(format("S2 disagrees: silence before %.2f of its completions, %.2f "
                             "expected",
                             e.silence_observed / n, e.silence_expected / n));
  }
  v.confidence = std::min(v.confidence, 0.999);
  if (v.kind == VerdictKind::BlocksLoop && e.process_s > 0) {
    v.loop_share = std::min(1.0, static_cast<double>(e.samples) / e.process_s * v.blocking_ms / 1000);
  }
  return v;
}

}  // namespace loopguard::advice
