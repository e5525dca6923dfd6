#include "proxy/routing/route_latency.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace loopguard::routing {

double percentileOf(const std::vector<uint32_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

uint64_t RouteLatency::nextRandom() {
  // xorshift64: deterministic (tests replay the same windows), plenty for a reservoir.
  random_ ^= random_ << 13;
  random_ ^= random_ >> 7;
  random_ ^= random_ << 17;
  return random_;
}

uint32_t RouteLatency::slotOf(std::string_view endpoint) {
  // A handful of endpoints per upstream: a linear scan beats a map.
  for (uint32_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i].name == endpoint) return i;
  }
  endpoints_.push_back(Slot{std::string(endpoint)});
  return static_cast<uint32_t>(endpoints_.size() - 1);
}

bool RouteLatency::add(std::string_view endpoint, uint64_t rtt_us, SampleOutcome outcome,
                       TimePointMs now) {
  if (!window_start_) window_start_ = now;
  uint32_t slot = slotOf(endpoint);
  if (outcome == SampleOutcome::Drop) {
    ++drops_;
    ++endpoints_[slot].drops;
  } else {
    ++endpoints_[slot].samples;
    Sample sample{slot, static_cast<uint32_t>(
                            std::min<uint64_t>(rtt_us, std::numeric_limits<uint32_t>::max()))};
    ++timed_seen_;
    if (samples_.size() < kReservoir) {
      samples_.push_back(sample);
    } else {
      uint64_t pick = nextRandom() % timed_seen_;
      if (pick < kReservoir) samples_[pick] = sample;
    }
  }
  if (now - *window_start_ < kMinWindowMs || timed_seen_ + drops_ < kMinSamples) return false;
  close(now);
  return true;
}

void RouteLatency::close(TimePointMs now) {
  LatencyWindow w;
  w.closed_at = now;
  w.samples = timed_seen_;
  w.drops = drops_;
  std::vector<uint32_t> all;
  all.reserve(samples_.size());
  for (const Sample& s : samples_) all.push_back(s.rtt_us);
  std::sort(all.begin(), all.end());
  w.p10_us = percentileOf(all, 0.10);
  w.p50_us = percentileOf(all, 0.50);
  w.p90_us = percentileOf(all, 0.90);

  std::vector<uint32_t> mine;
  for (uint32_t i = 0; i < endpoints_.size(); ++i) {
    mine.clear();
    for (const Sample& s : samples_) {
      if (s.endpoint == i) mine.push_back(s.rtt_us);
    }
    std::sort(mine.begin(), mine.end());
    EndpointWindow e;
    e.endpoint = std::move(endpoints_[i].name);
    e.samples = endpoints_[i].samples;
    e.drops = endpoints_[i].drops;
    e.p50_us = percentileOf(mine, 0.50);
    w.endpoints.push_back(std::move(e));
  }

  if (w.samples > 0) {
    double p50 = w.p50_us / 1000.0;
    double p90 = w.p90_us / 1000.0;
    p50_ms_ = p50_ms_ ? *p50_ms_ + kSmoothing * (p50 - *p50_ms_) : p50;
    p90_ms_ = p90_ms_ ? *p90_ms_ + kSmoothing * (p90 - *p90_ms_) : p90;
  }
  last_ = std::move(w);
  ++windows_;

  endpoints_.clear();
  samples_.clear();
  timed_seen_ = 0;
  drops_ = 0;
  window_start_ = now;
}

}  // namespace loopguard::routing
