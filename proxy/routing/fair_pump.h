// Gives units of one shared capacity to the limiters that queue for it, oldest waiter first and
// one admission per turn: one queue per route, yet the capacity goes out in arrival order across
// routes, and a route whose own cap is full does not stall the others.
//
// The gate that owns the capacity asks mayTake() in its tryTake() and calls took() when it gives
// a unit, so that a pumped limiter takes exactly one unit per turn. Used by an AdaptiveLimit (its
// routes' Limiters) and by offload/WorkerPool (its routes' RouteLimiters: any T for which
// limiterOf(T&) names its Limiter).
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "common/coalesced_loop.h"
#include "proxy/routing/limiter.h"

namespace loopguard::routing {

inline Limiter& limiterOf(Limiter& limiter) { return limiter; }

class FairPump {
 public:
  // Pumps while has_capacity() holds and some limiter admits. Re-entrant: a nested call (a
  // gate owner pumping again from inside) leaves a note and the outer loop runs again. Each
  // limiter is held while it pumps.
  template <class T, class HasCapacity>
  void run(const std::vector<std::weak_ptr<T>>& limiters, HasCapacity&& has_capacity) {
    loop_.run([&] {
      std::vector<const Limiter*> stuck;  // have waiters but admitted nothing this round
      while (has_capacity()) {
        std::shared_ptr<T> oldest;
        TimePointMs oldest_at = 0;
        for (const auto& weak : limiters) {
          std::shared_ptr<T> held = weak.lock();
          if (!held) continue;
          const Limiter& limiter = limiterOf(*held);
          std::optional<TimePointMs> at = limiter.oldestEnqueuedAt();
          if (!at || std::find(stuck.begin(), stuck.end(), &limiter) != stuck.end()) continue;
          if (!oldest || *at < oldest_at) {
            oldest = std::move(held);
            oldest_at = *at;
          }
        }
        if (!oldest) break;
        budget_ = 1;
        limiterOf(*oldest).pump();
        bool admitted = budget_ == 0;
        budget_ = -1;
        if (!admitted) stuck.push_back(&limiterOf(*oldest));  // its own cap is full
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
