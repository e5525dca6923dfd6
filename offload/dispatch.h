// Dispatch arithmetic of a worker pool, as pure code: which worker takes the next request and
// how many more requests the pool can admit. Unit-tested without processes.
#pragma once

#include <cstdint>

namespace loopguard::offload {

// What dispatch needs to know about one worker.
struct DispatchView {
  bool dispatchable = false;  // ready, not stopping
  uint32_t in_flight = 0;     // requests on it (connecting, running, or finishing)
  uint64_t served = 0;        // requests it was given so far
};

// The least-busy dispatchable worker that has a free slot (in_flight < concurrency); ties go to
// the one that served fewer requests, then to the first. Returns `end` when none qualifies.
// `view(*it)` gives the DispatchView of an element.
template <class It, class ViewFn>
It pickLeastBusy(It begin, It end, uint32_t concurrency, ViewFn view) {
  It best = end;
  DispatchView best_view;
  for (It it = begin; it != end; ++it) {
    DispatchView v = view(*it);
    if (!v.dispatchable || v.in_flight >= concurrency) continue;
    if (best == end || v.in_flight < best_view.in_flight ||
        (v.in_flight == best_view.in_flight && v.served < best_view.served)) {
      best = it;
      best_view = v;
    }
  }
  return best;
}

// Admission capacity of a pool. Units are taken when a route admits a request (before a worker
// is picked) and given back when it ends, so `held` counts requests between admission and
// their end: waiting for a connection, running on a worker, or finishing. The pool can admit
// another request while held < slots (slots = concurrency x dispatchable workers). Slots can
// shrink below `held` when a worker dies or stops; then nothing is admitted until enough
// requests end.
class SlotLedger {
 public:
  void setSlots(uint64_t slots) { slots_ = slots; }
  uint64_t slots() const { return slots_; }
  uint64_t held() const { return held_; }
  bool hasRoom() const { return held_ < slots_; }
  uint64_t room() const { return held_ < slots_ ? slots_ - held_ : 0; }
  bool tryTake() {
    if (!hasRoom()) return false;
    ++held_;
    return true;
  }
  // False (and nothing changes) on a give-back without a take: a caller's bug, never an
  // underflow.
  bool giveBack() {
    if (held_ == 0) return false;
    --held_;
    return true;
  }

 private:
  uint64_t slots_ = 0;
  uint64_t held_ = 0;
};

}  // namespace loopguard::offload
