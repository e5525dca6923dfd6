// A route's upstream time, as the request path reports it: from the request fully written to the
// upstream to the response head (never the time queued in loopguard, never the connect). Samples
// are gathered in windows; a closed window gives the route's percentiles (for the queue policy's
// CoDel scaling) and, per upstream endpoint, a median and a drop count (for the adaptive limit).
// Pure logic: time comes in as arguments.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/routing/limiter_clock.h"

namespace loopguard::routing {

enum class SampleOutcome {
  Ok,    // a response head with a status below 500
  Drop,  // a 5xx, a response timeout or a reset after the request was sent: an overload signal
};

// One endpoint's part of a closed window.
struct EndpointWindow {
  std::string endpoint;  // as the target names it ("127.0.0.1:8000", a worker socket...)
  uint64_t samples = 0;  // timed (Ok) samples
  uint64_t drops = 0;
  double p50_us = 0;  // of the timed samples; 0 when there are none
};

struct LatencyWindow {
  TimePointMs closed_at = 0;
  uint64_t samples = 0;  // timed samples, every endpoint
  uint64_t drops = 0;
  double p10_us = 0;  // low percentile: the candidate for the route's no-load latency
  double p50_us = 0;
  double p90_us = 0;
  std::vector<EndpointWindow> endpoints;
};

class RouteLatency {
 public:
  // A window closes with the first sample that finds it at least this old and this full.
  // Envoy and Netflix use 100 ms-1 s windows of at least 10 samples: fewer is noise.
  static constexpr TimePointMs kMinWindowMs = 100;
  static constexpr uint64_t kMinSamples = 10;
  // Samples kept per window; beyond, a uniform reservoir of this size (memory stays bounded at
  // any request rate; the percentiles of 512 samples are as good as those of all of them).
  static constexpr size_t kReservoir = 512;
  // Weight of a new window in the smoothed percentiles the queue policy uses.
  static constexpr double kSmoothing = 0.25;

  // True when this sample closed a window (lastWindow() then holds it).
  bool add(std::string_view endpoint, uint64_t rtt_us, SampleOutcome outcome, TimePointMs now);

  const LatencyWindow& lastWindow() const { return last_; }
  uint64_t windowsClosed() const { return windows_; }
  // Smoothed p50 / p90 of the route's upstream time in ms, once a window had timed samples.
  std::optional<double> p50Ms() const { return p50_ms_; }
  std::optional<double> p90Ms() const { return p90_ms_; }

 private:
  struct Sample {
    uint32_t endpoint;  // index into endpoints_
    uint32_t rtt_us;
  };
  struct Slot {
    std::string name;
    uint64_t samples = 0;  // timed samples seen this window (kept or not)
    uint64_t drops = 0;
  };

  uint32_t slotOf(std::string_view endpoint);
  void close(TimePointMs now);
  uint64_t nextRandom();

  std::vector<Slot> endpoints_;  // endpoints seen in the current window
  std::vector<Sample> samples_;  // the reservoir
  uint64_t timed_seen_ = 0;      // timed samples offered to the reservoir this window
  uint64_t drops_ = 0;
  std::optional<TimePointMs> window_start_;
  LatencyWindow last_;
  uint64_t windows_ = 0;
  std::optional<double> p50_ms_;
  std::optional<double> p90_ms_;
  uint64_t random_ = 0x9e3779b97f4a7c15ULL;
};

// Nearest-rank percentile of an ascending list (0 when empty).
double percentileOf(const std::vector<uint32_t>& sorted, double q);

}  // namespace loopguard::routing
