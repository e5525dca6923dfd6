#include "common/uv/timeout_queue.h"

#include "common/uv/loop.h"

namespace loopguard::uv {

void Timeout::arm(TimeoutQueue& queue) {
  unlink();
  queue.add(*this);
}

TimeoutQueue::TimeoutQueue(uv_loop_t* loop, uint64_t duration_ms)
    : loop_(loop),
      duration_ms_(duration_ms),
      timer_(loop, this, &bindMethod<TimeoutQueue, &TimeoutQueue::onTimer>) {
  timer_.unref();
}

void TimeoutQueue::add(Timeout& timeout) {
  timeout.deadline_ = uv_now(loop_) + duration_ms_;
  entries_.pushBack(timeout);
  // Later entries are due later: an armed timer fires in time for this one too.
  if (!timer_.active()) {
    timer_due_ = timeout.deadline_;
    timer_.start(duration_ms_);
  }
}

void TimeoutQueue::onTimer() {
  uint64_t now = uv_now(loop_);
  // Each callback may arm, cancel or destroy any entry (its own included): take the head anew
  // every time, and never touch an entry after its callback ran.
  while (Timeout* due = entries_.front()) {
    if (due->deadline_ > now) {
      timer_due_ = due->deadline_;
      timer_.start(due->deadline_ - now);
      return;
    }
    due->unlink();
    due->fn_(due->owner_);
  }
}

TimeoutQueue& TimeoutQueues::of(uint64_t duration_ms) {
  for (auto& q : queues_) {
    if (q->duration() == duration_ms) return *q;
  }
  // A duration not seen before (start-up, or a reload): drop the queues nobody waits in.
  for (size_t i = 0; i < queues_.size();) {
    if (queues_[i]->empty()) {
      Loop::of(loop_).deferDelete(std::move(queues_[i]));
      queues_[i] = std::move(queues_.back());
      queues_.pop_back();
    } else {
      ++i;
    }
  }
  queues_.push_back(std::make_unique<TimeoutQueue>(loop_, duration_ms));
  return *queues_.back();
}

}  // namespace loopguard::uv
