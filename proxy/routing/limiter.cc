#include "proxy/routing/limiter.h"

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <utility>

namespace loopguard::routing {

Limiter::Limiter(config::RouteLimits limits, LimiterClock& clock, CapacityGate* gate)
    : limits_(std::move(limits)), clock_(clock), gate_(gate), policy_(limits_.queue_order) {}

Limiter::~Limiter() {
  assert(head_ == nullptr && decided_.empty() && "Limiter destroyed with waiters");
  // Without asserts, detach the waiters so their flags tell the truth; nobody can be told, since
  // a callback could reach back into this dying object.
  while (head_ != nullptr) unlink(*head_);
  while (LimiterWaiter* waiter = decided_.popFront()) waiter->owner_ = nullptr;
  disarm();
}

std::optional<uint64_t> Limiter::routeCap() const {
  if (!limits_.max_in_flight_auto) return limits_.max_in_flight;
  return std::min(limits_.max_in_flight_max, share_cap_.value_or(limits_.max_in_flight_max));
}

bool Limiter::hasRoom() const {
  std::optional<uint64_t> cap = routeCap();
  return !cap || stats_.in_flight < *cap;
}

bool Limiter::tryTakeSlot() {
  // The gate is asked only when there is in-flight room: a unit taken and then not used would
  // have to be given back, and giveBack() may re-enter pump().
  if (!hasRoom()) return false;
  if (gate_ != nullptr && !gate_->tryTake()) return false;
  ++gate_held_;
  ++stats_.in_flight;
  noteDemand();
  return true;
}

Admission Limiter::admit(LimiterWaiter& waiter) {
  if (waiter.owner_ != nullptr) {
    // Queueing a node twice would corrupt the list; refusing is the only safe answer.
    assert(false && "admit() of a waiter that is already queued");
    return Admission::QueueFull;
  }
  // FIFO: with anyone waiting, a newcomer never takes a slot ahead of them, even if one is free
  // right now (the gate owner's pump() is on its way).
  if (head_ == nullptr && tryTakeSlot()) return Admission::Admitted;

  const TimePointMs now = clock_.now();
  const bool full = stats_.queue_depth >= limits_.max_queue;
  // max_queue: 0 means no waiting at all, even where a reload left waiters queued.
  const bool evict = full && head_ != nullptr && limits_.max_queue > 0 &&
                     policy_.evictsOldest(now, stats_.queue_depth, limits_.max_queue);
  if (full && !evict) {
    ++stats_.rejected_queue_full;
    return Admission::QueueFull;
  }

  waiter.enqueued_at_ = now;
  // A negative timeout cannot come from a validated config; clamp it rather than wrap around.
  waiter.deadline_ =
      now + static_cast<TimePointMs>(std::max<int64_t>(0, limits_.queue_timeout.count()));
  link(waiter);
  // The oldest hears of it in a later step, not on the newcomer's stack.
  if (evict) evictOldest();
  rearm();
  return Admission::Queued;
}

void Limiter::evictOldest() {
  LimiterWaiter& oldest = *head_;
  unlink(oldest);
  ++stats_.rejected_queue_evicted;
  decide(oldest, LimiterWaiter::Outcome::Evicted);
}

void Limiter::decide(LimiterWaiter& waiter, LimiterWaiter::Outcome outcome) {
  waiter.outcome_ = outcome;
  waiter.owner_ = this;
  decided_.pushBack(waiter);
  clock_.post();
}

void Limiter::deliver() {
  LimiterWaiter* waiter = decided_.popFront();
  if (waiter == nullptr) return;  // every decided waiter was cancelled meanwhile
  waiter->owner_ = nullptr;
  if (!decided_.empty()) clock_.post();
  // Last: the callback may release, admit or cancel here, or drop the last reference to us.
  switch (waiter->outcome_) {
    case LimiterWaiter::Outcome::Admitted: waiter->onAdmitted(); return;
    case LimiterWaiter::Outcome::QueueTimeout: waiter->onQueueTimeout(); return;
    case LimiterWaiter::Outcome::Evicted: waiter->onEvicted(); return;
  }
}

void Limiter::cancel(LimiterWaiter& waiter) {
  if (waiter.owner_ != this) return;
  if (!waiter.queued_) {
    // Decided, not told yet: it hears nothing, and a slot it was given goes to the next waiter.
    decided_.remove(waiter);
    waiter.owner_ = nullptr;
    if (waiter.outcome_ == LimiterWaiter::Outcome::Admitted) release();
    return;
  }
  unlink(waiter);
  // The armed deadline stays a valid lower bound for the rest; only an empty queue disarms, so a
  // cancel stays O(1) (a later early tick finds nothing expired and re-arms).
  if (head_ == nullptr) disarm();
}

void Limiter::release() {
  assert(stats_.in_flight > 0 && "release() without a matching admission");
  if (stats_.in_flight == 0) return;  // never underflow the gauge, even on a caller's bug
  --stats_.in_flight;
  noteDemand();
  assert(gate_held_ + retiredHeld() == stats_.in_flight + 1);

  // Give the unit back to the gate it was taken from. Admissions are not told apart, so those
  // made under a retired gate (or under none) are assumed to finish first: they started first.
  CapacityGate* repay = nullptr;
  if (!retired_gates_.empty()) {
    repay = retired_gates_.front().first;
    if (--retired_gates_.front().second == 0) retired_gates_.erase(retired_gates_.begin());
  } else {
    repay = gate_;
    --gate_held_;
  }
  if (repay != nullptr) repay->giveBack();  // may call pump() of this limiter: that is fine

  pump();
}

void Limiter::pump() {
  // No waiter is called from here (they hear in a later step), so nothing below re-enters.
  while (head_ != nullptr && tryTakeSlot()) {
    bool newest = policy_.newestFirst(clock_.now(), stats_.queue_depth, limits_.max_queue);
    LimiterWaiter& waiter = newest ? *tail_ : *head_;
    unlink(waiter);
    decide(waiter, LimiterWaiter::Outcome::Admitted);
  }
  if (head_ == nullptr) disarm();
}

void Limiter::onTimer() {
  // The clock fired, so it is no longer armed.
  armed_.reset();
  const TimePointMs now = clock_.now();
  for (;;) {
    // Deadlines are in queue order (every waiter has the same queue_timeout and, once the queue
    // stands, the same target) except after a reload changed queue_timeout: only then a scan.
    LimiterWaiter* expired = head_;
    if (deadlines_ordered_) {
      if (expired != nullptr && deadlineOf(*expired, now) > now) expired = nullptr;
    } else {
      while (expired != nullptr && deadlineOf(*expired, now) > now) expired = expired->next_;
    }
    if (expired == nullptr) break;
    bool early = expired->deadline_ > now;  // refused by the policy before its queue_timeout
    unlink(*expired);
    ++stats_.rejected_queue_timeout;
    if (early) ++stats_.early_refusals;
    decide(*expired, LimiterWaiter::Outcome::QueueTimeout);
  }
  // Leave the clock armed for exactly the earliest deadline. An empty queue disarms explicitly:
  // onTimer() may also be called while the timer is still armed.
  if (head_ == nullptr) {
    clock_.disarm();
  } else {
    rearm();
  }
}

void Limiter::reconfigure(const config::RouteLimits& limits, CapacityGate* gate) {
  if (limits.queue_timeout != limits_.queue_timeout && head_ != nullptr) {
    deadlines_ordered_ = false;
  }
  limits_ = limits;
  policy_.setOrder(limits_.queue_order);
  if (gate != gate_) {
    // Admissions made without a gate are recorded too (as nullptr), so their releases are not
    // mistaken for units of the new gate.
    if (gate_held_ > 0) retired_gates_.emplace_back(gate_, gate_held_);
    gate_ = gate;
    gate_held_ = 0;
    // Switching back to a gate that in-flight requests still hold units of: they are current
    // again, so repay them in the ordinary way.
    for (auto it = retired_gates_.begin(); it != retired_gates_.end();) {
      if (it->first == gate) {
        gate_held_ += it->second;
        it = retired_gates_.erase(it);
      } else {
        ++it;
      }
    }
  }
  pump();  // the limit may have grown, or the new gate may have room
  // The order may have changed the deadlines.
  rearm();
}

void Limiter::setServiceTime(double p50_ms, double p90_ms) {
  policy_.setServiceTime(p50_ms, p90_ms);
  rearm();
}

void Limiter::failAllQueued() {
  while (head_ != nullptr) {
    LimiterWaiter& waiter = *head_;
    unlink(waiter);
    ++stats_.rejected_no_workers;
    decide(waiter, LimiterWaiter::Outcome::QueueTimeout);
  }
  disarm();
}

std::optional<TimePointMs> Limiter::oldestEnqueuedAt() const {
  if (head_ == nullptr) return std::nullopt;
  return head_->enqueued_at_;
}

uint64_t Limiter::retiredHeld() const {
  uint64_t held = 0;
  for (const auto& retired : retired_gates_) held += retired.second;
  return held;
}

uint64_t Limiter::gateUnitsHeld(const CapacityGate* gate) const {
  if (gate == nullptr) return 0;
  uint64_t held = gate == gate_ ? gate_held_ : 0;
  for (const auto& [retired, units] : retired_gates_) {
    if (retired == gate) held += units;
  }
  return held;
}

void Limiter::link(LimiterWaiter& waiter) {
  waiter.queued_ = true;
  waiter.owner_ = this;
  waiter.next_ = nullptr;
  waiter.prev_ = tail_;
  if (tail_ != nullptr) {
    tail_->next_ = &waiter;
  } else {
    head_ = &waiter;
    policy_.onQueueNonEmpty(waiter.enqueued_at_);
  }
  tail_ = &waiter;
  ++stats_.queue_depth;
  noteDemand();
}

void Limiter::unlink(LimiterWaiter& waiter) {
  if (waiter.prev_ != nullptr) {
    waiter.prev_->next_ = waiter.next_;
  } else {
    head_ = waiter.next_;
  }
  if (waiter.next_ != nullptr) {
    waiter.next_->prev_ = waiter.prev_;
  } else {
    tail_ = waiter.prev_;
  }
  waiter.prev_ = nullptr;
  waiter.next_ = nullptr;
  waiter.queued_ = false;
  waiter.owner_ = nullptr;  // decide() sets it again
  --stats_.queue_depth;
  noteDemand();
  if (head_ == nullptr) {
    policy_.onQueueEmpty();
    deadlines_ordered_ = true;
  }
}

TimePointMs Limiter::deadlineOf(const LimiterWaiter& waiter, TimePointMs now) const {
  std::optional<TimePointMs> early = policy_.earlyDeadline(waiter.enqueued_at_, now);
  return early ? std::min(*early, waiter.deadline_) : waiter.deadline_;
}

void Limiter::rearm() {
  if (head_ == nullptr) {
    disarm();
    return;
  }
  const TimePointMs now = clock_.now();
  TimePointMs earliest = deadlineOf(*head_, now);
  if (!deadlines_ordered_) {
    for (const LimiterWaiter* w = head_->next_; w != nullptr; w = w->next_) {
      earliest = std::min(earliest, w->deadline_);
    }
  }
  // Before the queue stands the early deadlines do not apply yet: wake up when it starts to,
  // to refuse at once whoever is already past the target then.
  if (policy_.earlyRefusalPossible() && !policy_.standing(now)) {
    if (std::optional<TimePointMs> stands = policy_.standsAt()) {
      earliest = std::min(earliest, *stands);
    }
  }
  if (armed_ != earliest) {
    armed_ = earliest;
    clock_.arm(earliest);
  }
}

void Limiter::disarm() {
  if (!armed_) return;
  armed_.reset();
  clock_.disarm();
}

}  // namespace loopguard::routing
