#include "proxy/upstream/connection_pool.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "common/uv/loop.h"

namespace loopguard::upstream {

ConnectionPool::ConnectionPool(uv_loop_t* loop, net::BufferPool& buffers, Owner& owner,
                               Destination destination, const PoolSettings& settings)
    : loop_(loop),
      buffers_(buffers),
      owner_(&owner),
      destination_(std::move(destination)),
      settings_(settings),
      timeouts_(loop, settings.connect_timeout_ms, settings.idle_timeout_ms),
      waiters_(this),
      fresh_(this) {}

ConnectionPool::~ConnectionPool() { assert(open() == 0 && "a pool outlives its connections"); }

ConnectionPool& ConnectionPool::of(UpstreamConnection& connection) {
  return *connection.pool_link.pool;
}

uint64_t ConnectionPool::load() const {
  return uint64_t{in_use_} + set_aside_ + std::max<uint64_t>(connecting_, waiting());
}

// ---------------------------------------------------------------------------------------------
// Requests

UpstreamConnection* ConnectionPool::takeIdle() {
  if (shut_down_ || !waiters_.empty()) return nullptr;
  PoolLink* link = idle_.popFront();
  if (link == nullptr) return nullptr;
  link->stage = Stage::InUse;
  ++in_use_;
  return link->connection;
}

void ConnectionPool::request(TargetWaiter& waiter) {
  if (shut_down_) {
    waiter.deliverFailure(loop_, UpstreamErrorKind::Connect, shutdown_why_);
    return;
  }
  if (waiter.options.fresh) {
    fresh_.pushBack(waiter);
    startConnect(&waiter);
    return;
  }
  if (waiters_.empty()) {
    if (PoolLink* link = idle_.popFront()) {
      setAside(*link->connection, waiter, true);
      return;
    }
  }
  waiters_.pushBack(waiter);
  connectAsNeeded();
}

void ConnectionPool::release(UpstreamConnection* connection, bool reusable) {
  assert(connection->pool_link.stage == Stage::InUse);
  leaveStage(*connection);  // Closing until it is parked or handed over
  if (!reusable || shut_down_ || connection->state() == UpstreamConnection::State::Closing) {
    closeConnection(*connection);
    return;
  }
  connection->detach();
  handOver(*connection, true);
}

void ConnectionPool::onWaitCancelled(TargetWaiter& waiter) {
  unbindFresh(waiter);  // its own connect serves whoever waits next, or goes idle
  if (owner_ != nullptr) owner_->onWaitCancelled(*this, waiter);
}

void ConnectionPool::unbindFresh(TargetWaiter& waiter) {
  if (UpstreamConnection* connection = std::exchange(waiter.connection_, nullptr)) {
    connection->pool_link.waiter = nullptr;
    --fresh_connecting_;
  }
  waiter.from_ = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Hand-over

void ConnectionPool::handOver(UpstreamConnection& connection, bool reused) {
  if (shut_down_) {
    closeConnection(connection);
    return;
  }
  if (TargetWaiter* waiter = waiters_.popFront()) {
    setAside(connection, *waiter, reused);
    return;
  }
  park(connection);
}

void ConnectionPool::setAside(UpstreamConnection& connection, TargetWaiter& waiter, bool reused) {
  PoolLink& link = connection.pool_link;
  link.unlink();
  link.stage = Stage::SetAside;
  link.waiter = &waiter;
  set_aside_list_.pushBack(link);
  ++set_aside_;
  waiter.deliverConnection(loop_, connection, reused, *this);
}

void ConnectionPool::onHandedOver(TargetWaiter& waiter, UpstreamConnection& connection) {
  PoolLink& link = connection.pool_link;
  link.unlink();
  link.stage = Stage::InUse;
  link.waiter = nullptr;
  --set_aside_;
  ++in_use_;
  if (owner_ != nullptr) owner_->onHandOut(*this, waiter, connection);
}

void ConnectionPool::onHandOverCancelled(TargetWaiter& waiter, UpstreamConnection& connection) {
  PoolLink& link = connection.pool_link;
  link.unlink();
  link.stage = Stage::Closing;  // until handed over again or parked
  link.waiter = nullptr;
  --set_aside_;
  if (owner_ != nullptr) owner_->onWaitCancelled(*this, waiter);
  handOver(connection, waiter.reused_);
}

void ConnectionPool::park(UpstreamConnection& connection) {
  if (idle_.size() >= settings_.max_idle) {
    closeConnection(connection);
    return;
  }
  PoolLink& link = connection.pool_link;
  link.unlink();
  link.stage = Stage::Idle;
  connection.becomeIdle();
  idle_.pushFront(link);  // LIFO
}

// ---------------------------------------------------------------------------------------------
// Connects

void ConnectionPool::connectAsNeeded() {
  while (!shut_down_ && waiters_.size() > queueConnects() &&
         (settings_.max_connecting == 0 || connecting_ < settings_.max_connecting)) {
    startConnect(nullptr);
  }
}

void ConnectionPool::startConnect(TargetWaiter* fresh) {
  ConnectionOwner& self = *this;  // a private base: convert here, not inside emplace()
  UpstreamConnection* connection =
      &connections_.emplaceIn(uv::Loop::of(loop_).slab(sizeof(UpstreamConnection)), loop_,
                              buffers_, self, timeouts_, destination_.name);
  PoolLink& link = connection->pool_link;
  link.pool = this;
  link.connection = connection;
  link.stage = Stage::Connecting;
  link.waiter = fresh;
  connecting_list_.pushBack(link);
  if (settings_.open_gauge != nullptr) ++*settings_.open_gauge;
  ++connecting_;
  if (fresh != nullptr) {
    ++fresh_connecting_;
    fresh->connection_ = connection;
  }
  int rc = destination_.is_unix
               ? connection->connectUnix(destination_.unix_path)
               : connection->connectTcp(reinterpret_cast<const sockaddr*>(&destination_.addr));
  if (rc != 0) {
    // Reported from the close callback, as a failed connect: never from inside request().
    link.connect_status = rc;
    connection->close();
  }
}

void ConnectionPool::onConnectResult(UpstreamConnection* connection, int status) {
  PoolLink& link = connection->pool_link;
  if (link.stage != Stage::Connecting) return;
  if (status != 0) {
    connectFailed(*connection, status);
    connection->close();
    return;
  }
  TargetWaiter* fresh = leaveStage(*connection);  // Closing until handed over or parked
  if (fresh != nullptr) {
    fresh_.remove(*fresh);
    setAside(*connection, *fresh, false);
  } else {
    handOver(*connection, false);
  }
  // The cap bounds handshakes in progress, not connections: one ended, the next may start.
  connectAsNeeded();
}

void ConnectionPool::connectFailed(UpstreamConnection& connection, int status) {
  TargetWaiter* charged = leaveStage(connection);
  if (charged != nullptr) {
    fresh_.remove(*charged);
  } else if (waiters_.size() > queueConnects()) {
    charged = waiters_.popFront();  // the connects still on the way cover one waiter fewer
  }
  if (owner_ != nullptr) {
    owner_->onConnectFailed(*this, charged, status);
  } else if (charged != nullptr) {
    charged->deliverFailure(loop_, UpstreamErrorKind::Connect, "connect failed");
  }
  connectAsNeeded();
}

// ---------------------------------------------------------------------------------------------
// Closing

TargetWaiter* ConnectionPool::leaveStage(UpstreamConnection& connection) {
  PoolLink& link = connection.pool_link;
  TargetWaiter* waiter = std::exchange(link.waiter, nullptr);
  switch (link.stage) {
    case Stage::Connecting:
      --connecting_;
      if (waiter != nullptr) {
        --fresh_connecting_;
        waiter->connection_ = nullptr;
      }
      break;
    case Stage::SetAside:
      --set_aside_;
      if (waiter != nullptr) waiter->dropDelivery();
      break;
    case Stage::InUse:
      --in_use_;
      break;
    case Stage::Idle:
    case Stage::Closing:
      break;
  }
  link.unlink();
  link.stage = Stage::Closing;
  return waiter;
}

TargetWaiter* ConnectionPool::closeConnection(UpstreamConnection& connection) {
  TargetWaiter* waiter = leaveStage(connection);
  connection.close();
  return waiter;
}

void ConnectionPool::closeIdle() {
  while (PoolLink* link = idle_.popFront()) closeConnection(*link->connection);
}

void ConnectionPool::onIdleClosed(UpstreamConnection* connection) {
  // The idle timer fired, or the app closed (or wrote to) an idle connection; it closes next.
  // One set aside from the idle set is still in state Idle: its waiter hears of it when it is
  // gone (onConnectionGone).
  PoolLink& link = connection->pool_link;
  if (link.stage == Stage::Idle) {
    link.unlink();
    link.stage = Stage::Closing;
  }
}

void ConnectionPool::onConnectionGone(UpstreamConnection* connection) {
  bool in_use = connection->pool_link.stage == Stage::InUse;
  if (connection->pool_link.stage == Stage::Connecting) {
    // Closed before its connect finished: it failed to connect.
    int status = connection->pool_link.connect_status;
    connectFailed(*connection, status != 0 ? status : UV_ECANCELED);
  } else if (TargetWaiter* waiter = leaveStage(*connection)) {
    // Set aside, and closed before its waiter got it: the waiter keeps its place at the front.
    if (shut_down_) {
      waiter->deliverFailure(loop_, UpstreamErrorKind::Connect, shutdown_why_);
    } else if (waiter->options.fresh) {
      fresh_.pushBack(*waiter);
      startConnect(waiter);
    } else {
      waiters_.pushFront(*waiter);
      connectAsNeeded();
    }
  }
  // Out of the set now (open() is one lower), deleted at the end of the loop turn.
  connections_.retire(loop_, *connection);
  if (settings_.open_gauge != nullptr) --*settings_.open_gauge;
  if (owner_ != nullptr) owner_->onConnectionClosed(*this, *connection, in_use);
  if (self_ && open() == 0) uv::Loop::of(loop_).deferDelete(std::move(self_));
}

void ConnectionPool::shutdown(const char* why) {
  shut_down_ = true;
  shutdown_why_ = why;
  closeIdle();
  while (TargetWaiter* waiter = waiters_.popFront()) {
    waiter->deliverFailure(loop_, UpstreamErrorKind::Connect, why);
  }
  while (TargetWaiter* waiter = fresh_.popFront()) {
    unbindFresh(*waiter);
    waiter->deliverFailure(loop_, UpstreamErrorKind::Connect, why);
  }
}

void ConnectionPool::evict(WaitList& into) {
  // Those with a connection set aside were at the front: they keep their place.
  while (PoolLink* link = set_aside_list_.front()) {
    into.pushBack(*closeConnection(*link->connection));  // its delivery is dropped
  }
  while (TargetWaiter* waiter = waiters_.popFront()) into.pushBack(*waiter);
  while (TargetWaiter* waiter = fresh_.popFront()) {
    unbindFresh(*waiter);
    into.pushBack(*waiter);
  }
  while (PoolLink* link = connecting_list_.front()) closeConnection(*link->connection);
  closeIdle();
}

void ConnectionPool::retire(std::unique_ptr<ConnectionPool> pool) {
  ConnectionPool* self = pool.get();
  self->owner_ = nullptr;
  self->shutdown("upstream shutting down");
  while (PoolLink* link = self->connecting_list_.front()) self->closeConnection(*link->connection);
  if (self->open() == 0) {
    uv::Loop::of(self->loop_).deferDelete(std::move(pool));
  } else {
    self->self_ = std::move(pool);
  }
}

}  // namespace loopguard::upstream
