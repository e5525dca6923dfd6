#include "proxy/metrics/recent_window.h"

#include <bit>
#include <cmath>

namespace loopguard::metrics {

namespace {

constexpr uint64_t kPerOctave = uint64_t{1} << LatencyBuckets::kSubBits;

uint64_t toMicros(double seconds) {
  if (!(seconds > 0)) return 0;  // negatives and NaN
  double us = seconds * 1e6;
  return us >= 1e15 ? uint64_t{1'000'000'000'000'000} : static_cast<uint64_t>(us);
}

// Bounds in microseconds of bucket `index` >= 1.
uint64_t lowerMicros(size_t index) {
  uint64_t k = index - 1;
  int exponent = LatencyBuckets::kMinExponent + static_cast<int>(k / kPerOctave);
  return (kPerOctave + k % kPerOctave) << (exponent - LatencyBuckets::kSubBits);
}

}  // namespace

size_t LatencyBuckets::index(double seconds) {
  uint64_t us = toMicros(seconds);
  if (us < (uint64_t{1} << kMinExponent)) return 0;
  int exponent = std::bit_width(us) - 1;
  if (exponent > kMaxExponent) return kCount - 1;
  uint64_t sub = (us >> (exponent - kSubBits)) & (kPerOctave - 1);
  return 1 + static_cast<size_t>(exponent - kMinExponent) * kPerOctave + sub;
}

double LatencyBuckets::lowerBound(size_t index) {
  return index == 0 ? 0.0 : static_cast<double>(lowerMicros(index)) / 1e6;
}

double LatencyBuckets::upperBound(size_t index) {
  if (index == 0) return static_cast<double>(uint64_t{1} << kMinExponent) / 1e6;
  if (index == kCount - 1) return INFINITY;
  return lowerBound(index + 1);
}

double LatencyBuckets::representative(size_t index) {
  if (index == kCount - 1) return lowerBound(index);  // open-ended: report what is known
  return (lowerBound(index) + upperBound(index)) / 2;
}

std::optional<double> LatencyBuckets::quantile(const std::array<uint32_t, kCount>& counts,
                                               double q) {
  uint64_t total = 0;
  for (uint32_t c : counts) total += c;
  if (total == 0) return std::nullopt;
  auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < kCount; ++i) {
    seen += counts[i];
    if (seen >= rank) return representative(i);
  }
  return representative(kCount - 1);
}

RecentWindow::RecentWindow() = default;
RecentWindow::~RecentWindow() = default;
RecentWindow::RecentWindow(RecentWindow&&) noexcept = default;
RecentWindow& RecentWindow::operator=(RecentWindow&&) noexcept = default;

RecentWindow::Slot& RecentWindow::slotFor(uint64_t now_ms) {
  uint64_t second = now_ms / 1000;
  if (!slots_) {
    slots_ = std::make_unique<std::array<Slot, kSeconds>>();
    first_second_ = second;
  }
  Slot& slot = (*slots_)[second % kSeconds];
  if (slot.second != second) slot = Slot{second};  // it held a second a minute (or more) ago
  return slot;
}

const RecentWindow::Slot* RecentWindow::slotAt(uint64_t second) const {
  if (!slots_) return nullptr;
  const Slot& slot = (*slots_)[second % kSeconds];
  return slot.second == second ? &slot : nullptr;
}

void RecentWindow::recordResponse(uint64_t now_ms, double seconds, int status) {
  Slot& slot = slotFor(now_ms);
  ++slot.requests;
  if (status >= 500) ++slot.server_errors;
  ++slot.latency[LatencyBuckets::index(seconds)];
}

void RecentWindow::recordRefusal(uint64_t now_ms) { ++slotFor(now_ms).refusals; }

RecentWindow::Summary RecentWindow::summary(uint64_t now_ms) const {
  Summary s;
  if (!slots_) return s;
  uint64_t now_s = now_ms / 1000;
  std::array<uint32_t, LatencyBuckets::kCount> merged{};
  for (uint64_t back = 0; back < kSeconds && back <= now_s; ++back) {
    const Slot* slot = slotAt(now_s - back);
    if (slot == nullptr) continue;
    s.requests += slot->requests;
    s.server_errors += slot->server_errors;
    s.refusals += slot->refusals;
    for (size_t i = 0; i < merged.size(); ++i) merged[i] += slot->latency[i];
  }
  s.p50 = LatencyBuckets::quantile(merged, 0.50);
  s.p99 = LatencyBuckets::quantile(merged, 0.99);
  uint64_t since = now_s >= first_second_ ? now_s - first_second_ + 1 : 1;
  s.seconds = since < kSeconds ? since : kSeconds;
  return s;
}

std::vector<RecentWindow::Second> RecentWindow::perSecond(uint64_t now_ms) const {
  std::vector<Second> out(kSeconds);
  uint64_t now_s = now_ms / 1000;
  for (size_t i = 0; i < kSeconds; ++i) {
    uint64_t back = kSeconds - 1 - i;
    if (back > now_s) continue;
    const Slot* slot = slotAt(now_s - back);
    if (slot == nullptr) continue;
    out[i].requests = slot->requests;
    out[i].refusals = slot->refusals;
    out[i].p99 = LatencyBuckets::quantile(slot->latency, 0.99);
  }
  return out;
}

}  // namespace loopguard::metrics
