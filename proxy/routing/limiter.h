// Per-route concurrency limit with a bounded wait list. Pure logic: time, the timer and the
// later step come in through LimiterClock, so it is unit-tested without a loop or sockets.
//
// Completion rule: a queued waiter's outcome (admitted, timed out, evicted) is decided at once
// (the slot and gate unit are taken then, and the counters move) but the waiter hears of it
// only in a later step, from the loop's ready queue (LimiterClock::post), never on the stack of
// the call that decided it: another request's release(), a newer request's admit(), a gate
// owner's pump(), a reload. If the waiter is cancel()ed in between, it hears nothing and what
// it was given goes back (the slot, to the next waiter).
//
// The limit is max_in_flight, or with `max_in_flight: auto` the share of an AdaptiveLimit (its
// CapacityGate, shared by every auto route on one upstream) capped by max_in_flight_max. The
// order the queue is served in, and early refusals, come from a QueuePolicy.
//
// Keyed by route name in a LimiterRegistry so counts survive a reload: reconfigure() changes
// the limits in place and in-flight requests carry over to the new limit.
#pragma once

#include <cassert>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/intrusive_list.h"
#include "config/config.h"
#include "proxy/metrics/demand.h"
#include "proxy/routing/limiter_clock.h"
#include "proxy/routing/queue_policy.h"

namespace loopguard::routing {

// An extra admission condition beyond max_in_flight: a pool route also needs a free worker
// slot. tryTake() takes one unit of capacity if there is one; giveBack() returns it. When
// capacity frees up, the gate's owner calls Limiter::pump() on its limiters.
class CapacityGate {
 public:
  virtual ~CapacityGate() = default;
  virtual bool tryTake() = 0;
  virtual void giveBack() = 0;
  virtual bool hasCapacity() const = 0;
};

class Limiter;

// A request's place in a limiter. Owned by the request (intrusive: no allocation to queue).
// The callbacks come from the limiter's deliver(), run from the loop's ready queue: never from
// inside another request's release() or admit(). A waiter that is queued, or whose outcome is
// on its way, must be cancel()ed before it is destroyed.
class LimiterWaiter : private ListNode<LimiterWaiter> {
 public:
  virtual ~LimiterWaiter() {
    assert(owner_ == nullptr && "a waiter must be cancel()ed before it is destroyed");
  }
  virtual void onAdmitted() = 0;      // left the queue holding a slot (and a gate unit, if any)
  virtual void onQueueTimeout() = 0;  // left the queue without a slot: waited too long
  virtual void onEvicted() = 0;       // left the queue without a slot: a newer request took it

 private:
  friend class Limiter;
  friend class IntrusiveList<LimiterWaiter>;
  enum class Outcome : uint8_t { Admitted, QueueTimeout, Evicted };
  LimiterWaiter* prev_ = nullptr;
  LimiterWaiter* next_ = nullptr;
  TimePointMs enqueued_at_ = 0;
  TimePointMs deadline_ = 0;
  bool queued_ = false;  // in the queue; once decided, in the limiter's decided list instead
  Outcome outcome_ = Outcome::Admitted;  // while decided
  // The limiter it is queued or decided in, so a stray cancel() is a no-op.
  const Limiter* owner_ = nullptr;
};

enum class Admission {
  Admitted,   // slot taken now; no callback will follow
  // Exactly one of onAdmitted / onQueueTimeout / onEvicted follows, from a later step,
  // unless cancel() comes first.
  Queued,
  QueueFull,  // refused; nothing held
};

struct LimiterStats {
  uint64_t in_flight = 0;
  uint64_t queue_depth = 0;
  uint64_t rejected_queue_full = 0;
  uint64_t rejected_queue_timeout = 0;
  uint64_t rejected_no_workers = 0;  // refused by failAllQueued(); not a queue timeout
  // Pushed out of a full queue served newest first.
  uint64_t rejected_queue_evicted = 0;
  // Of rejected_queue_timeout: refused at the target of a standing queue, before queue_timeout.
  uint64_t early_refusals = 0;
};

class Limiter {
 public:
  Limiter(config::RouteLimits limits, LimiterClock& clock, CapacityGate* gate = nullptr);
  // Must not be destroyed with waiters queued or decided (asserted; in a release build they are
  // unlinked without a callback, and the timer is disarmed).
  ~Limiter();
  Limiter(const Limiter&) = delete;
  Limiter& operator=(const Limiter&) = delete;

  // Admit now, queue (bounded by max_queue, deadline now + queue_timeout), or refuse. A full
  // queue served newest first evicts its oldest waiter (onEvicted, in a later step) instead of
  // refusing.
  // With a gate, admission also needs gate->tryTake(); a gated limiter queues requests even
  // when max_in_flight is unset (waiting for a worker counts as queued).
  [[nodiscard]] Admission admit(LimiterWaiter& waiter);

  // The waiter leaves at once (its client went away); no callback, now or later. A waiter
  // admitted but not told yet gives its slot (and gate unit) back, which admits the next one.
  // No-op if it is neither queued nor decided here.
  void cancel(LimiterWaiter& waiter);

  // A slot held by an admitted request is given back (exactly once per admission). Gives the
  // gate unit back too, then admits queued waiters while there is room (told in a later step).
  void release();

  // Admit queued waiters while there is room (called by a gate owner when capacity frees).
  // Takes their slots now; they are told in a later step. Never calls a waiter back.
  void pump();

  // Called by the clock's owner when the step asked for with LimiterClock::post() runs: the
  // oldest decided waiter is told its outcome. If more are decided, post() is asked again
  // first, and nothing of this limiter is touched after the callback (which may drop the last
  // reference to it).
  void deliver();

  // Called by the clock's owner when the armed deadline passes: every expired waiter is refused
  // (onQueueTimeout(), in a later step), then the timer is re-armed for the next deadline. The
  // armed deadline is a
  // lower bound (a cancel or an admission from the queue head does not re-arm), so a call that
  // finds nothing expired is normal: it just re-arms. A waiter's deadline is its queue_timeout,
  // or earlier the policy's early deadline once the queue stands.
  void onTimer();

  // The route's smoothed upstream time (RouteLatency), which scales the policy's target and
  // interval. Re-arms the timer; never calls a waiter back.
  void setServiceTime(double p50_ms, double p90_ms);

  // With max_in_flight: auto, a cap on this route's share of the adaptive limit (set by the
  // AdaptiveLimit, e.g. for a route that blocks its upstream's loop); nullopt: none. Never
  // admits by itself: a raised cap takes effect at the next pump().
  void setShareCap(std::optional<uint64_t> cap) { share_cap_ = cap; }
  // The most requests this route may have in flight by its own limits (before any gate):
  // max_in_flight, or for auto min(max_in_flight_max, share cap). nullopt: unlimited.
  std::optional<uint64_t> routeCap() const;

  // Reload: new limits apply to new admissions and to the queue; in-flight requests carry over.
  // Queued waiters keep their deadlines, and stay queued even if max_queue shrank below the depth
  // (they were accepted; new ones are refused until the depth is below). If the gate changes,
  // units taken from the old gate are given back to it as in-flight requests release (oldest
  // gate first), so the old gate must stay alive until gateUnitsHeld(old) == 0.
  void reconfigure(const config::RouteLimits& limits, CapacityGate* gate);

  // Units of `gate` held by in-flight requests of this limiter (current or retired gate).
  uint64_t gateUnitsHeld(const CapacityGate* gate) const;

  // Refuse every queued waiter now (with onQueueTimeout, in a later step), e.g. a pool that has
  // no workers. Counted as rejected_no_workers.
  void failAllQueued();

  // When the oldest queued waiter was queued, if any (for fair pumping across routes).
  std::optional<TimePointMs> oldestEnqueuedAt() const;

  const LimiterStats& stats() const { return stats_; }
  // In flight + queued, integrated over the clock (loopguard_route_demand_seconds_total).
  uint64_t demandMilliseconds() const { return demand_.requestMilliseconds(clock_.now()); }
  const config::RouteLimits& limits() const { return limits_; }
  const QueuePolicy& policy() const { return policy_; }

 private:
  bool hasRoom() const;  // below routeCap() (the gate is not asked)
  bool tryTakeSlot();    // hasRoom() and a gate unit: takes both, or nothing
  // At the tail (the newest end).
  void link(LimiterWaiter& waiter);
  void unlink(LimiterWaiter& waiter);
  TimePointMs deadlineOf(const LimiterWaiter& waiter, TimePointMs now) const;
  void evictOldest();
  // `waiter`, out of the queue, hears `outcome` in a later step.
  void decide(LimiterWaiter& waiter, LimiterWaiter::Outcome outcome);
  void rearm();
  void disarm();
  uint64_t retiredHeld() const;
  // After every change of in_flight or queue_depth.
  void noteDemand() { demand_.update(clock_.now(), stats_.in_flight + stats_.queue_depth); }

  config::RouteLimits limits_;
  LimiterClock& clock_;
  CapacityGate* gate_;
  // In-flight admissions made under gate_ (each holds one of its units, if gate_ is set).
  // in_flight == gate_held_ + the units listed in retired_gates_.
  uint64_t gate_held_ = 0;
  // Gates (nullptr: none) replaced by reconfigure() while admissions made under them were still
  // in flight, oldest first.
  std::vector<std::pair<CapacityGate*, uint64_t>> retired_gates_;
  QueuePolicy policy_;
  std::optional<uint64_t> share_cap_;
  // Queued waiters in arrival order: head_ the oldest, tail_ the newest.
  LimiterWaiter* head_ = nullptr;
  LimiterWaiter* tail_ = nullptr;
  // Whether the queue's deadlines grow from head to tail (false after a reload changed
  // queue_timeout with waiters queued, until the queue empties): then the head's is the earliest.
  bool deadlines_ordered_ = true;
  std::optional<TimePointMs> armed_;  // what the clock is armed for, if anything
  // Out of the queue, their outcome decided, not told yet: oldest decision first.
  IntrusiveList<LimiterWaiter> decided_;
  LimiterStats stats_;
  metrics::DemandIntegrator demand_;
};

}  // namespace loopguard::routing
