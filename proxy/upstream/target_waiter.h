// A request's wait for an upstream connection, as a handle the request owns.
//
// A target (a Cluster, a WorkerPool, and the ConnectionPool of each of their destinations) keeps
// waiting requests in WaitLists: intrusive FIFOs, so queueing allocates nothing. A waiter is in
// at most one list at a time; cancelWait(), or its destruction, takes it out of whichever list it
// is in, in O(1), and the list's owner hears of it. Outcomes reach the waiter through one of its
// two callbacks, always posted to the loop's ready queue: never from inside the call that decided
// them (another request's release, a reload's shutdown), so a request never starts or fails on
// the stack of another one.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string_view>

#include "common/intrusive_list.h"
#include "common/uv/loop.h"

namespace loopguard::upstream {

class ConnectionPool;
class Lease;
class UpstreamConnection;
class WaitList;

enum class UpstreamErrorKind { Connect, Reset, Timeout };
const char* errorKindName(UpstreamErrorKind kind);

struct AcquireOptions {
  bool fresh = false;  // a new connection, not a pooled one (for the one retry)
  // Who asks, for the target's own logs (a worker pool names slow and timed-out requests).
  // Must stay valid while the request waits.
  std::string_view route;
  std::string_view request_id;
};

class TargetWaiter : private ListNode<TargetWaiter> {
 public:
  TargetWaiter() = default;
  virtual ~TargetWaiter() { cancelWait(); }
  TargetWaiter(const TargetWaiter&) = delete;
  TargetWaiter& operator=(const TargetWaiter&) = delete;

  // A connection ready for one request. `reused`: it has been idle in a pool (it may have been
  // closed by the app meanwhile: see the retry rule in the Exchange).
  virtual void onTargetReady(Lease* lease, bool reused) = 0;
  virtual void onTargetFailed(UpstreamErrorKind kind, const char* why) = 0;

  // Queued somewhere, or its outcome on its way.
  bool waiting() const { return queue_ != nullptr || delivery_.posted(); }
  // Ends the wait wherever it is; no callback follows. A connection set aside for it goes back
  // to its pool.
  void cancelWait();

  // ---- For targets: what they note about the request while it waits.
  AcquireOptions options;  // as given to acquire()
  uint32_t tries = 0;      // endpoints or workers that failed it so far
  // Ends the wait with a failure, delivered from the ready queue. Call it on a waiter that is in
  // no list (pop it first).
  void deliverFailure(uv_loop_t* loop, UpstreamErrorKind kind, const char* why);

 private:
  friend class WaitList;
  friend class ConnectionPool;
  friend class IntrusiveList<TargetWaiter>;
  // Only a pool hands out connections: it hears when the hand-over happens or is cancelled.
  void deliverConnection(uv_loop_t* loop, UpstreamConnection& connection, bool reused,
                         ConnectionPool& from);
  // The connection set aside for it closed before the hand-over: the wait goes on.
  void dropDelivery();
  void onDelivery();

  WaitList* queue_ = nullptr;
  uv::ReadyCall delivery_{this, &uv::bindMethod<TargetWaiter, &TargetWaiter::onDelivery>};
  UpstreamConnection* connection_ = nullptr;
  ConnectionPool* from_ = nullptr;
  bool reused_ = false;
  UpstreamErrorKind kind_ = UpstreamErrorKind::Connect;
  const char* why_ = "";
};

// Waiting requests of one target, oldest first.
class WaitList {
 public:
  class Observer {
   public:
    virtual ~Observer() = default;
    // `waiter` was cancelled while in the list (it is out of it now).
    virtual void onWaitCancelled(TargetWaiter& waiter) = 0;
  };

  explicit WaitList(Observer* observer = nullptr) : observer_(observer) {}
  // Waiters still in it are let go without a callback: the owner fails or moves them first.
  ~WaitList();
  WaitList(const WaitList&) = delete;
  WaitList& operator=(const WaitList&) = delete;

  void pushBack(TargetWaiter& waiter);
  void pushFront(TargetWaiter& waiter);
  TargetWaiter* front() const { return list_.front(); }
  TargetWaiter* popFront();
  // Takes `waiter` out without telling the observer; false if it is not in this list.
  bool remove(TargetWaiter& waiter);
  size_t size() const { return list_.size(); }
  bool empty() const { return list_.empty(); }

 private:
  friend class TargetWaiter;
  IntrusiveList<TargetWaiter> list_;
  Observer* observer_;
};

}  // namespace loopguard::upstream
