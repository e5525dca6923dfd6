// Gives units of one shared capacity to the limiters that queue for it, oldest waiter first and
// one admission per turn: one queue per route, yet the capacity goes out in arrival order across
// routes, and a route whose own cap is full does not stall the others.
//
// The gate that owns the capacity asks mayTake() in its tryTake() and calls took() when it gives
// a unit, so that a pumped limiter takes exactly one unit per turn. (offload/WorkerPool does the
// same for pool routes with its own copy; it could use this one.)
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "common/coalesced_loop.h"
#include "proxy/routing/limiter.h"

namespace loopguard::routing {

class FairPump {
 public:
  // Pumps while has_capacity() holds and some limiter admits. Re-entrant: a nested call (a
  // callback that gave a unit back) leaves a note and the outer loop runs again.
  template <class HasCapacity>
  void run(const std::vector<std::weak_ptr<Limiter>>& limiters, HasCapacity&& has_capacity) {
    loop_.run([&] {
      std::vector<const Limiter*> stuck;  // have waiters but admitted nothing this round
      while (has_capacity()) {
        std::shared_ptr<Limiter> oldest;
        TimePointMs oldest_at = 0;
        for (const auto& weak : limiters) {
          std::shared_ptr<Limiter> limiter = weak.lock();
          if (!limiter) continue;
          std::optional<TimePointMs> at = limiter->oldestEnqueuedAt();
          if (!at || std::find(stuck.begin(), stuck.end(), limiter.get()) != stuck.end()) {
            continue;
          }
          if (!oldest || *at < oldest_at) {
            oldest = std::move(limiter);
            oldest_at = *at;
          }
        }
        if (!oldest) break;
        budget_ = 1;
        oldest->pump();
        bool admitted = budget_ == 0;
        budget_ = -1;
        if (!admitted) stuck.push_back(oldest.get());
      }
    });
  }

  bool mayTake() const { return budget_ != 0; }
  void took() {
    if (budget_ > 0) --budget_;
  }

 private:
  int budget_ = -1;  // >= 0 while pumping one limiter: admissions it may still make
  CoalescedLoop loop_;
};

}  // namespace loopguard::routing
