// What one observed response contributes to the statistics, and the knobs of those statistics.
// Times are nanoseconds on one monotonic clock (uv_hrtime on the proxy's loop); the statistics
// never read a clock themselves, so unit tests feed them streams whose answer is known.
#pragma once

#include <cstdint>

#include "proxy/advice/endpoint_registry.h"

namespace loopguard::advice {

inline constexpr int64_t kNsPerMs = 1'000'000;

// One request to an app process, from the moment its last byte went to the upstream to the
// arrival of its response head (the completion event: what the app's loop did last for it).
struct Completion {
  int64_t sent_ns = 0;
  int64_t head_ns = 0;
  EndpointId endpoint = 0;
  // May be counted as a delayed victim: false for streamed responses, whose head says little
  // about when the handler was ready.
  bool victim_ok = true;
  // Another request to the same process was in flight when this one completed: a stall by this
  // request could have held someone (what S1 calls an opportunity).
  bool others_in_flight = false;
};

struct StreamParams {
  // Completions closer than this belong to one burst (S1).
  int64_t burst_gap_ns = 1 * kNsPerMs;
  // A response later than its endpoint's baseline by more than this was held (S1).
  int64_t held_ns = 2 * kNsPerMs;
  // The baseline of an endpoint is its minimum latency over the last 2 x this many responses.
  uint32_t baseline_window = 128;
  // Responses of an endpoint needed before its baseline is trusted.
  uint32_t baseline_min_samples = 5;
  // S3: probes are kept this long for the tails of requests still to complete.
  int64_t probe_horizon_ns = 2000 * kNsPerMs;
  // S1 refinement: when the first response of a burst was itself held and the second was not,
  // blame the second (a thread that holds the GIL wakes the loop through a callback that another
  // ready callback may overtake, so its reply is not always first).
  bool skip_held_head = true;
  // S1: when the first response of a burst was itself held, the first unheld response in the
  // burst, or this soon after it, shares the blame: a GIL-holding thread's reply comes back
  // through a callback that runs after the victims it held.
  int64_t trailer_ns = 2 * kNsPerMs;
};

// The minimum of a stream over a sliding window, in O(1): the minimum of the current and the
// previous block of `window` values. Resets the older block when the current one fills.
class WindowedMin {
 public:
  void add(int64_t v, uint32_t window) {
    if (count_ == 0 || v < current_) current_ = v;
    if (++count_ >= window) {
      previous_ = current_;
      has_previous_ = true;
      count_ = 0;
    }
    ++total_;
  }
  // -1 while empty.
  int64_t value() const {
    if (count_ == 0) return has_previous_ ? previous_ : -1;
    return has_previous_ && previous_ < current_ ? previous_ : current_;
  }
  uint64_t samples() const { return total_; }

 private:
  int64_t current_ = 0;
  int64_t previous_ = 0;
  uint32_t count_ = 0;
  bool has_previous_ = false;
  uint64_t total_ = 0;
};

}  // namespace loopguard::advice
