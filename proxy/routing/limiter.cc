#include "proxy/routing/limiter.h"

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <utility>

namespace loopguard::routing {

Limiter::Limiter(config::RouteLimits limits, LimiterClock& clock, CapacityGate* gate)
    : limits_(std::move(limits)), clock_(clock), gate_(gate) {}

Limiter::~Limiter() {
  assert(head_ == nullptr && "Limiter destroyed with waiters queued");
  // Without asserts, detach the waiters so their queued_ flags tell the truth; nobody can be
  // told, since a callback could reach back into this dying object.
  while (head_ != nullptr) unlink(*head_);
  disarm();
}

bool Limiter::hasRoom() const {
  return !limits_.max_in_flight || stats_.in_flight < *limits_.max_in_flight;
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
  if (waiter.queued_) {
    // Queueing a node twice would corrupt the list; refusing is the only safe answer.
    assert(false && "admit() of a waiter that is already queued");
    return Admission::QueueFull;
  }
  // FIFO: with anyone waiting, a newcomer never takes a slot ahead of them, even if one is free
  // right now (the gate owner's pump() is on its way).
  if (head_ == nullptr && tryTakeSlot()) return Admission::Admitted;

  if (stats_.queue_depth >= limits_.max_queue) {
    ++stats_.rejected_queue_full;
    return Admission::QueueFull;
  }

  const TimePointMs now = clock_.now();
  waiter.enqueued_at_ = now;
  // A negative timeout cannot come from a validated config; clamp it rather than wrap around.
  waiter.deadline_ =
      now + static_cast<TimePointMs>(std::max<int64_t>(0, limits_.queue_timeout.count()));
  waiter.queued_ = true;
  waiter.owner_ = this;
  waiter.next_ = nullptr;
  waiter.prev_ = tail_;
  if (tail_ != nullptr) {
    tail_->next_ = &waiter;
  } else {
    head_ = &waiter;
  }
  tail_ = &waiter;
  ++stats_.queue_depth;
  noteDemand();

  if (!armed_ || waiter.deadline_ < *armed_) {
    armed_ = waiter.deadline_;
    clock_.arm(waiter.deadline_);
  }
  return Admission::Queued;
}

void Limiter::cancel(LimiterWaiter& waiter) {
  if (!waiter.queued_ || waiter.owner_ != this) return;
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
  // A callback below may release(), cancel(), admit() or pump() this limiter again. The nested
  // pump() only leaves a note; this loop re-reads head_ after every callback and never keeps a
  // pointer across one, since the callback may have unlinked (or destroyed) any waiter.
  bool ran = pump_loop_.run([this] {
    while (head_ != nullptr && tryTakeSlot()) {
      LimiterWaiter& waiter = *head_;
      unlink(waiter);
      waiter.onAdmitted();
    }
  });
  if (ran && head_ == nullptr) disarm();
}

void Limiter::onTimer() {
  // The clock fired, so it is no longer armed: a waiter queued by a callback below must arm it.
  armed_.reset();
  const TimePointMs now = clock_.now();
  for (;;) {
    // Restart from the head after every callback: it may have cancelled or admitted any waiter.
    // Deadlines are in queue order except after a reload changed queue_timeout, so the scan
    // normally stops at the head.
    LimiterWaiter* expired = head_;
    while (expired != nullptr && expired->deadline_ > now) expired = expired->next_;
    if (expired == nullptr) break;
    unlink(*expired);
    ++stats_.rejected_queue_timeout;
    expired->onQueueTimeout();
  }
  // Whatever the callbacks armed, leave the clock armed for exactly the earliest deadline. An
  // empty queue disarms explicitly: onTimer() may also be called while the timer is still armed.
  armed_.reset();
  if (head_ == nullptr) {
    clock_.disarm();
  } else {
    rearm();
  }
}

void Limiter::reconfigure(const config::RouteLimits& limits, CapacityGate* gate) {
  limits_ = limits;
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
}

void Limiter::failAllQueued() {
  while (head_ != nullptr) {
    LimiterWaiter& waiter = *head_;
    unlink(waiter);
    ++stats_.rejected_no_workers;
    waiter.onQueueTimeout();
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
  waiter.owner_ = nullptr;
  --stats_.queue_depth;
  noteDemand();
}

void Limiter::rearm() {
  if (head_ == nullptr) {
    disarm();
    return;
  }
  TimePointMs earliest = head_->deadline_;
  for (const LimiterWaiter* w = head_->next_; w != nullptr; w = w->next_) {
    earliest = std::min(earliest, w->deadline_);
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
