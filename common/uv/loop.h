// The loop and the two services every object on it shares:
//
//  - the ready queue. Work is posted to run from the loop, later in the same loop iteration, never
//    inside the call that posted it: an operation that is over at once (a write the kernel took
//    whole, a connection freed by another request) still completes through its callback, from a
//    stack of its own. Calls posted from an I/O callback run in the check phase right after the
//    poll, so completing them costs no extra epoll round trip; work posted before the poll (from
//    a timer) makes that poll non-blocking.
//  - deferred delete. An owner hands over an object that may still be on the stack (its own
//    callback is running) and it is destroyed at the end of the loop turn, once the ready queue is
//    empty, like Envoy's Dispatcher::deferredDelete.
//
// Anything holding a uv_loop_t* of ours reaches its Loop through Loop::of().
#pragma once

#include <uv.h>

#include <memory>
#include <utility>
#include <vector>

#include "common/intrusive_list.h"
#include "common/slab.h"
#include "common/uv/bind.h"
#include "common/uv/handle.h"

namespace loopguard::uv {

class Loop;

// A call to one method of its owner, posted to the ready queue. Owned by the object whose method
// it calls; cancel() or its destruction takes it off the queue, so a posted call never outlives
// its owner. Posting a call that is already posted does nothing: it runs once.
//   ReadyCall done_(this, &uv::bindMethod<Foo, &Foo::onDone>);
class ReadyCall : private ListNode<ReadyCall> {
 public:
  using Fn = void (*)(void* owner);
  ReadyCall(void* owner, Fn fn) : owner_(owner), fn_(fn) {}
  ReadyCall(const ReadyCall&) = delete;
  ReadyCall& operator=(const ReadyCall&) = delete;

  void post(uv_loop_t* loop);
  void cancel() { unlink(); }
  bool posted() const { return linked(); }

 private:
  friend class Loop;
  friend class IntrusiveList<ReadyCall>;
  void* owner_;
  Fn fn_;
};

class Loop {
 public:
  Loop();
  // Closes the loop if close() was not called (see there).
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uv_loop_t* get() { return &loop_; }
  static Loop& of(uv_loop_t* loop) { return *static_cast<Loop*>(loop->data); }

  void post(ReadyCall& call);

  template <class T>
  void deferDelete(std::unique_ptr<T> object) {
    if (!object) return;
    doomed_.push_back(Doomed(object.release(), [](void* p) { delete static_cast<T*>(p); }));
    arm();
  }

  // The loop's slab for blocks of `block_bytes` (made on first use): what every open connection
  // holds for its life is allocated there (see common/slab.h). A handful of sizes at most.
  Slab& slab(size_t block_bytes);

  // Something gave back memory a burst had used (pooled states trimmed, idle connections'
  // parts dropped): whoever trims the heap (the proxy's trim timer, malloc_trim) does it at its
  // next tick. Taking the note clears it.
  void noteHeapFreed() { heap_freed_ = true; }
  bool takeHeapFreed() { return std::exchange(heap_freed_, false); }

  // Runs the loop until nothing is left to do (owners close their handles first), closes the
  // loop's own handles, and returns uv_loop_close(): 0, or UV_EBUSY if a handle is still open.
  // Called again, returns the same.
  int close();

 private:
  using Doomed = std::unique_ptr<void, void (*)(void*)>;
  void arm();
  void drain();

  // First: destroyed last, after everything the loop destroys that lives in them.
  std::vector<std::unique_ptr<Slab>> slabs_;
  uv_loop_t loop_;
  Handle<uv_check_t> check_;  // drains the queue after the poll
  Handle<uv_idle_t> idle_;    // while work is queued: keeps the poll from blocking
  IntrusiveList<ReadyCall> ready_;
  std::vector<Doomed> doomed_;
  bool armed_ = false;
  bool heap_freed_ = false;
  bool closed_ = false;
  int close_rc_ = 0;
};

}  // namespace loopguard::uv
