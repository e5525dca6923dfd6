// The last minute of one route, for the status page: one slot per second, each with a latency
// histogram and counts of responses, server errors and refusals. p50 / p99 "over the last
// minute" merge the slots of the last 60 seconds; the sparklines read them one by one.
//
// Cost: recording is O(1) (a bucket index from the value's bit width, and a slot cleared when
// its second comes round again, amortised over that second's requests). Memory is bounded and
// allocated on the first record: kSeconds x LatencyBuckets::kCount x 4 bytes, ~39 KiB a route.
// Queries are O(kSeconds x kCount), done per /status request, never per request.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace loopguard::metrics {

// Log-linear latency buckets (HdrHistogram style): 8 per power of two from 128 µs to 134 s,
// so a bucket is at most 12.5 % wide and a quantile read at its midpoint is within ~6.5 % of
// the truth; one bucket below 128 µs, and the last takes everything above.
class LatencyBuckets {
 public:
  static constexpr int kSubBits = 3;
  static constexpr int kMinExponent = 7;   // 2^7 µs = 128 µs
  static constexpr int kMaxExponent = 26;  // the top octave ends at 2^27 µs = 134 s
  static constexpr size_t kCount = 1 + (kMaxExponent - kMinExponent + 1) * (1 << kSubBits);

  static size_t index(double seconds);
  // Where a bucket's values lie: [lower, upper) in seconds, and the value a quantile reports.
  static double lowerBound(size_t index);
  static double upperBound(size_t index);
  static double representative(size_t index);
  // The q-quantile (0 < q <= 1) of a histogram: the representative value of the bucket that
  // holds the ceil(q x total)-th smallest value. Nothing recorded: nullopt.
  static std::optional<double> quantile(const std::array<uint32_t, kCount>& counts, double q);
};

class RecentWindow {
 public:
  static constexpr size_t kSeconds = 60;

  RecentWindow();
  ~RecentWindow();
  RecentWindow(RecentWindow&&) noexcept;
  RecentWindow& operator=(RecentWindow&&) noexcept;

  // A response (any status: the same population as loopguard_request_duration_seconds).
  void recordResponse(uint64_t now_ms, double seconds, int status);
  // A request refused by the route's limits (also recorded as a response when it is answered).
  void recordRefusal(uint64_t now_ms);

  struct Summary {
    uint64_t requests = 0;
    uint64_t server_errors = 0;  // 5xx, the proxy's own included
    uint64_t refusals = 0;
    std::optional<double> p50;   // seconds; nullopt with no response in the window
    std::optional<double> p99;
    uint64_t seconds = 0;        // how much of the window has passed since the first record
  };
  // The last kSeconds seconds, the current one included.
  Summary summary(uint64_t now_ms) const;

  struct Second {
    uint64_t requests = 0;
    uint64_t refusals = 0;
    std::optional<double> p99;
  };
  // kSeconds entries, oldest first; the last is the current (partial) second.
  std::vector<Second> perSecond(uint64_t now_ms) const;

 private:
  struct Slot {
    uint64_t second = UINT64_MAX;  // which second it holds; UINT64_MAX: none yet
    uint32_t requests = 0;
    uint32_t server_errors = 0;
    uint32_t refusals = 0;
    std::array<uint32_t, LatencyBuckets::kCount> latency{};
  };
  Slot& slotFor(uint64_t now_ms);
  // The slot holding `second` if it is still there.
  const Slot* slotAt(uint64_t second) const;

  std::unique_ptr<std::array<Slot, kSeconds>> slots_;
  uint64_t first_second_ = 0;
};

}  // namespace loopguard::metrics
