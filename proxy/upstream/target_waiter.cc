#include "proxy/upstream/target_waiter.h"

#include <cassert>
#include <utility>

#include "proxy/upstream/connection_pool.h"

namespace loopguard::upstream {

void TargetWaiter::cancelWait() {
  if (WaitList* queue = std::exchange(queue_, nullptr)) {
    queue->list_.remove(*this);
    if (queue->observer_ != nullptr) queue->observer_->onWaitCancelled(*this);
    return;
  }
  if (!delivery_.posted()) return;
  delivery_.cancel();
  UpstreamConnection* connection = std::exchange(connection_, nullptr);
  ConnectionPool* from = std::exchange(from_, nullptr);
  if (connection != nullptr) from->onHandOverCancelled(*this, *connection);
}

void TargetWaiter::deliverFailure(uv_loop_t* loop, UpstreamErrorKind kind, const char* why) {
  assert(!waiting() && "deliver to a waiter that is in no list");
  connection_ = nullptr;
  from_ = nullptr;
  kind_ = kind;
  why_ = why;
  delivery_.post(loop);
}

void TargetWaiter::deliverConnection(uv_loop_t* loop, UpstreamConnection& connection, bool reused,
                                     ConnectionPool& from) {
  assert(!waiting() && "deliver to a waiter that is in no list");
  connection_ = &connection;
  from_ = &from;
  reused_ = reused;
  delivery_.post(loop);
}

void TargetWaiter::dropDelivery() {
  delivery_.cancel();
  connection_ = nullptr;
  from_ = nullptr;
}

void TargetWaiter::onDelivery() {
  UpstreamConnection* connection = std::exchange(connection_, nullptr);
  ConnectionPool* from = std::exchange(from_, nullptr);
  if (connection == nullptr) {
    onTargetFailed(kind_, why_);
    return;
  }
  from->onHandedOver(*this, *connection);
  onTargetReady(connection, reused_);
}

WaitList::~WaitList() {
  while (TargetWaiter* waiter = popFront()) (void)waiter;
}

void WaitList::pushBack(TargetWaiter& waiter) {
  assert(!waiter.waiting());
  waiter.queue_ = this;
  list_.pushBack(waiter);
}

void WaitList::pushFront(TargetWaiter& waiter) {
  assert(!waiter.waiting());
  waiter.queue_ = this;
  list_.pushFront(waiter);
}

TargetWaiter* WaitList::popFront() {
  TargetWaiter* waiter = list_.popFront();
  if (waiter != nullptr) waiter->queue_ = nullptr;
  return waiter;
}

bool WaitList::remove(TargetWaiter& waiter) {
  if (waiter.queue_ != this) return false;
  waiter.queue_ = nullptr;
  list_.remove(waiter);
  return true;
}

}  // namespace loopguard::upstream
