// Per-route concurrency limit with a bounded FIFO wait list. Pure logic: time and timers come
// in through LimiterClock, so it is unit-tested without a loop or sockets.
//
// Keyed by route name in a LimiterRegistry so counts survive a reload: reconfigure() changes
// the limits in place and in-flight requests carry over to the new limit.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/coalesced_loop.h"
#include "config/config.h"
#include "proxy/metrics/demand.h"

namespace loopguard::routing {

using TimePointMs = uint64_t;  // monotonic milliseconds

// One timer per limiter, armed for the earliest queue deadline.
class LimiterClock {
 public:
  virtual ~LimiterClock() = default;
  virtual TimePointMs now() const = 0;
  virtual void arm(TimePointMs deadline) = 0;  // replaces any earlier arming
  virtual void disarm() = 0;
};

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
// The callbacks may be invoked from inside another request's release() or from the timer.
// A queued waiter must be cancel()ed before it is destroyed.
class LimiterWaiter {
 public:
  virtual ~LimiterWaiter() = default;
  virtual void onAdmitted() = 0;      // left the queue holding a slot (and a gate unit, if any)
  virtual void onQueueTimeout() = 0;  // left the queue without a slot

 private:
  friend class Limiter;
  LimiterWaiter* prev_ = nullptr;
  LimiterWaiter* next_ = nullptr;
  TimePointMs enqueued_at_ = 0;
  TimePointMs deadline_ = 0;
  bool queued_ = false;
  const Limiter* owner_ = nullptr;  // the limiter it is queued in, so a stray cancel() is a no-op
};

enum class Admission {
  Admitted,   // slot taken now; no callback will follow
  Queued,     // exactly one of onAdmitted / onQueueTimeout follows, unless cancel() first
  QueueFull,  // refused; nothing held
};

struct LimiterStats {
  uint64_t in_flight = 0;
  uint64_t queue_depth = 0;
  uint64_t rejected_queue_full = 0;
  uint64_t rejected_queue_timeout = 0;
  uint64_t rejected_no_workers = 0;  // refused by failAllQueued(); not a queue timeout
};

class Limiter {
 public:
  Limiter(config::RouteLimits limits, LimiterClock& clock, CapacityGate* gate = nullptr);
  // Must not be destroyed with waiters queued (asserted; in a release build they are unlinked
  // without a callback, and the timer is disarmed).
  ~Limiter();
  Limiter(const Limiter&) = delete;
  Limiter& operator=(const Limiter&) = delete;

  // Admit now, queue (FIFO, bounded by max_queue, deadline now + queue_timeout), or refuse.
  // With a gate, admission also needs gate->tryTake(); a gated limiter queues requests even
  // when max_in_flight is unset (waiting for a worker counts as queued).
  [[nodiscard]] Admission admit(LimiterWaiter& waiter);

  // The queued waiter leaves at once (its client went away). No callback. No-op if not queued.
  void cancel(LimiterWaiter& waiter);

  // A slot held by an admitted request is given back (exactly once per admission). Gives the
  // gate unit back too, then admits queued waiters while there is room.
  void release();

  // Admit queued waiters while there is room (called by a gate owner when capacity frees).
  void pump();

  // Called by the clock's owner when the armed deadline passes: every expired waiter gets
  // onQueueTimeout(), then the timer is re-armed for the next deadline. The armed deadline is a
  // lower bound (a cancel or an admission from the queue head does not re-arm), so a call that
  // finds nothing expired is normal: it just re-arms.
  void onTimer();

  // Reload: new limits apply to new admissions and to the queue; in-flight requests carry over.
  // Queued waiters keep their deadlines, and stay queued even if max_queue shrank below the depth
  // (they were accepted; new ones are refused until the depth is below). If the gate changes,
  // units taken from the old gate are given back to it as in-flight requests release (oldest
  // gate first), so the old gate must stay alive until gateUnitsHeld(old) == 0.
  void reconfigure(const config::RouteLimits& limits, CapacityGate* gate);

  // Units of `gate` held by in-flight requests of this limiter (current or retired gate).
  uint64_t gateUnitsHeld(const CapacityGate* gate) const;

  // Refuse every queued waiter now (with onQueueTimeout), e.g. a pool that has no workers.
  // Counted as rejected_no_workers. A waiter queued by one of those callbacks is refused too.
  void failAllQueued();

  // When the oldest queued waiter was queued, if any (for fair pumping across routes).
  std::optional<TimePointMs> oldestEnqueuedAt() const;

  const LimiterStats& stats() const { return stats_; }
  // In flight + queued, integrated over the clock (loopguard_route_demand_seconds_total).
  uint64_t demandMilliseconds() const { return demand_.requestMilliseconds(clock_.now()); }
  const config::RouteLimits& limits() const { return limits_; }

 private:
  bool hasRoom() const;  // below max_in_flight (the gate is not asked)
  bool tryTakeSlot();    // hasRoom() and a gate unit: takes both, or nothing
  void unlink(LimiterWaiter& waiter);
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
  LimiterWaiter* head_ = nullptr;
  LimiterWaiter* tail_ = nullptr;
  std::optional<TimePointMs> armed_;  // what the clock is armed for, if anything
  CoalescedLoop pump_loop_;
  LimiterStats stats_;
  metrics::DemandIntegrator demand_;
};

}  // namespace loopguard::routing
