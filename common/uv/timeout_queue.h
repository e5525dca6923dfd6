// Deadlines that many objects share at one duration, such as every idle keep-alive connection
// waiting out timeouts.idle: an intrusive FIFO in deadline order and one uv timer armed for the
// earliest, instead of a uv_timer_t per object. Arming and cancelling are O(1) list operations
// that allocate nothing and never touch libuv's timer heap, and an object carries a 48-byte
// Timeout instead of a ~190-byte timer handle.
//
// Entries are appended with deadline = now + duration, so the list stays in deadline order. The
// uv timer is re-armed lazily: a cancelled head leaves it armed, and when it fires it runs the
// entries that are due and re-arms for the next one. It does not keep the loop alive (unref'd):
// every entry belongs to an object with a handle of its own (a connection's socket), and a
// queue whose entries were all cancelled must not hold up the end of the process.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/intrusive_list.h"
#include "common/uv/timer.h"

namespace loopguard::uv {

class TimeoutQueue;

// One object's deadline in a TimeoutQueue: the owner's method runs once when it passes, unless
// cancel()ed, re-armed or destroyed first. In at most one queue at a time.
//   Timeout idle_{this, &uv::bindMethod<Foo, &Foo::onIdle>};
class Timeout : private ListNode<Timeout> {
 public:
  using Fn = void (*)(void* owner);
  Timeout(void* owner, Fn fn) : owner_(owner), fn_(fn) {}
  Timeout(const Timeout&) = delete;
  Timeout& operator=(const Timeout&) = delete;

  // Due at now + queue's duration; leaves whatever queue it was in.
  void arm(TimeoutQueue& queue);
  void cancel() { unlink(); }
  bool armed() const { return linked(); }

 private:
  friend class TimeoutQueue;
  friend class IntrusiveList<Timeout>;
  uint64_t deadline_ = 0;
  void* owner_;
  Fn fn_;
};

class TimeoutQueue {
 public:
  TimeoutQueue(uv_loop_t* loop, uint64_t duration_ms);
  TimeoutQueue(const TimeoutQueue&) = delete;
  TimeoutQueue& operator=(const TimeoutQueue&) = delete;

  uint64_t duration() const { return duration_ms_; }
  bool empty() const { return entries_.empty(); }

 private:
  friend class Timeout;
  void add(Timeout& timeout);
  void onTimer();

  uv_loop_t* loop_;
  uint64_t duration_ms_;
  IntrusiveList<Timeout> entries_;  // deadline order
  Timer timer_;
  uint64_t timer_due_ = 0;  // when the timer fires, while it is armed
};

// A loop's queues, one per duration in use: the durations come from the config, so a reload that
// changes one starts a new queue, and the old one is dropped once it has no entries left (its
// objects re-arm in the new one as they go on). Destruction is deferred to the end of the loop
// turn (the loop must be a uv::Loop): the queue that runs may be the one found empty.
class TimeoutQueues {
 public:
  explicit TimeoutQueues(uv_loop_t* loop) : loop_(loop) {}
  TimeoutQueues(const TimeoutQueues&) = delete;
  TimeoutQueues& operator=(const TimeoutQueues&) = delete;

  TimeoutQueue& of(uint64_t duration_ms);
  size_t size() const { return queues_.size(); }

 private:
  uv_loop_t* loop_;
  std::vector<std::unique_ptr<TimeoutQueue>> queues_;
};

}  // namespace loopguard::uv
