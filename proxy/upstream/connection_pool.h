// The connections of one destination: an endpoint of an upstream (Cluster) or one offload worker
// (WorkerPool). One implementation of what both need:
//
//  - idle keep-alive connections, reused most recent first (the least likely to have been closed
//    by the app), at most `max_idle` of them, each dropped after `idle_timeout`;
//  - connects started as waiting requests need them, at most `max_connecting` at once (0: no
//    cap). A burst wider than the idle set then waits for the first connection that frees up or
//    connects instead of opening (and later closing) one connection per request;
//  - the requests waiting for a connection, oldest first. Whichever connection becomes free
//    first (a connect that completes, a request that ends) goes to the oldest of them; a `fresh`
//    request (the one retry) gets a connect of its own and never a pooled connection.
//
// Hand-over rule: a connection that frees up is set aside for the next waiter, and the waiter
// gets it from the loop's ready queue (TargetWaiter), never on the stack of the request that
// released it. If the waiter is cancelled first, the connection goes to the one after it.
//
// The pool owns its connections from connect to close callback (a ConnectionSet: the one place
// that creates them; each is retired, deferred, once its close callback says it is gone). Its
// Owner (the Cluster's endpoint, the WorkerPool's worker) decides what a failed connect means:
// try another destination, or fail the request.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "common/intrusive_list.h"
#include "common/net/buffer_pool.h"
#include "proxy/upstream/target_waiter.h"
#include "proxy/upstream/upstream_connection.h"

namespace loopguard::upstream {

// Where a pool connects to.
struct Destination {
  std::string name;  // "127.0.0.1:8000", "[::1]:80", "unix:/path": logs and the access log
  bool is_unix = false;
  std::string unix_path;
  sockaddr_storage addr{};
};

struct PoolSettings {
  uint32_t max_idle = 0;
  uint64_t idle_timeout_ms = 0;
  uint64_t connect_timeout_ms = 0;
  uint32_t max_connecting = 0;  // 0: no cap
  // Kept equal to the connections open or connecting, for a gauge shared with others (the
  // upstream's connections; a worker's). May be null.
  uint64_t* open_gauge = nullptr;
};

class ConnectionPool final : private ConnectionOwner, private WaitList::Observer {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    // A connect failed (`status`: a libuv error; UV_ETIMEDOUT for connect_timeout, UV_ECANCELED
    // when the pool closed it itself). `charged` is the waiting request it leaves without a
    // connection on the way, already out of the pool, or null when the others still cover every
    // waiter. The owner sends it elsewhere or fails it (TargetWaiter::deliverFailure).
    virtual void onConnectFailed(ConnectionPool& pool, TargetWaiter* charged, int status) = 0;
    // `connection` goes to `waiter` now (called just before its onTargetReady).
    virtual void onHandOut(ConnectionPool& pool, TargetWaiter& waiter,
                           UpstreamConnection& connection) {
      (void)pool, (void)waiter, (void)connection;
    }
    // `waiter` left the pool without a connection: cancelled.
    virtual void onWaitCancelled(ConnectionPool& pool, TargetWaiter& waiter) {
      (void)pool, (void)waiter;
    }
    // `connection` is gone (open() is one lower; it is deleted after this). `in_use`: it closed
    // while a request had it, without a release() (not in the normal course).
    virtual void onConnectionClosed(ConnectionPool& pool, UpstreamConnection& connection,
                                    bool in_use) {
      (void)pool, (void)connection, (void)in_use;
    }
  };

  ConnectionPool(uv_loop_t* loop, net::BufferPool& buffers, Owner& owner, Destination destination,
                 const PoolSettings& settings);
  // Only once open() == 0 (see retire()).
  ~ConnectionPool() override;
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // The pool `connection` belongs to.
  static ConnectionPool& of(UpstreamConnection& connection);

  // An idle connection for a new request, in use from now on; null when there is none, or when
  // requests are already waiting (they come first).
  UpstreamConnection* takeIdle();
  // Queues `waiter` for a connection, delivered from the ready queue; with options.fresh, a
  // connection of its own. Never calls back from inside.
  void request(TargetWaiter& waiter);
  // The request on `connection` is over. `reusable`: both messages were complete and the
  // connection may carry another one; it goes to the next waiter, or idle, or closes.
  void release(UpstreamConnection* connection, bool reusable);

  // The oldest waiter (not fresh), taken out of the pool; null if none. For a failover.
  TargetWaiter* popWaiter() { return waiters_.popFront(); }
  // Moves every waiter into `into` (queued, fresh, or with a connection set aside: that
  // connection closes) and closes every connection not in use. For a destination that is gone.
  void evict(WaitList& into);
  void closeIdle();
  // No more connects; idle connections close; waiters fail with `why` (from the ready queue);
  // connections in use finish their request and close.
  void shutdown(const char* why);
  // The owner is going away before the pool's connections are closed: the pool shuts down and
  // deletes itself (deferred) once the last one is gone. Its owner hears nothing more.
  static void retire(std::unique_ptr<ConnectionPool> pool);
  void setMaxIdle(uint32_t max_idle) { settings_.max_idle = max_idle; }

  const Destination& destination() const { return destination_; }
  Owner& owner() const { return *owner_; }
  uint32_t open() const { return static_cast<uint32_t>(connections_.size()); }
  uint32_t connecting() const { return connecting_; }
  uint32_t idle() const { return static_cast<uint32_t>(idle_.size()); }
  uint32_t inUse() const { return in_use_; }  // connections carrying a request
  size_t waiting() const { return waiters_.size() + fresh_.size(); }
  // Requests in progress, about to be, or waiting for a connection: what least_request compares.
  // Connects in progress count as well, so a destination slow to accept does not look idle.
  uint64_t load() const;

 private:
  using Stage = PoolLink::Stage;

  void startConnect(TargetWaiter* fresh);
  void connectAsNeeded();
  uint32_t queueConnects() const { return connecting_ - fresh_connecting_; }
  // A free connection goes to the oldest waiter, or idle (or closes when the idle set is full).
  void handOver(UpstreamConnection& connection, bool reused);
  void setAside(UpstreamConnection& connection, TargetWaiter& waiter, bool reused);
  void park(UpstreamConnection& connection);
  void connectFailed(UpstreamConnection& connection, int status);
  // Takes `connection` out of its stage (counts, lists; Closing until it gets another) and
  // returns the waiter it was for: a fresh one it was connecting for, or the one it was set
  // aside for. That waiter is then in no list and hears nothing: the caller decides.
  TargetWaiter* leaveStage(UpstreamConnection& connection);
  TargetWaiter* closeConnection(UpstreamConnection& connection);
  // A fresh waiter and the connect made for it part ways.
  void unbindFresh(TargetWaiter& waiter);

  // Called by TargetWaiter from the ready queue, or when it is cancelled.
  friend class TargetWaiter;
  void onHandedOver(TargetWaiter& waiter, UpstreamConnection& connection);
  void onHandOverCancelled(TargetWaiter& waiter, UpstreamConnection& connection);

  // ConnectionOwner
  void onConnectResult(UpstreamConnection* connection, int status) override;
  void onIdleClosed(UpstreamConnection* connection) override;
  void onConnectionGone(UpstreamConnection* connection) override;
  // WaitList::Observer
  void onWaitCancelled(TargetWaiter& waiter) override;

  uv_loop_t* loop_;
  net::BufferPool& buffers_;
  Owner* owner_;
  Destination destination_;
  PoolSettings settings_;
  UpstreamTimeouts timeouts_;            // before connections_: every entry is a connection's
  ConnectionSet connections_;            // every connection, from connect to close callback
  IntrusiveList<PoolLink> idle_;         // front: most recently used
  IntrusiveList<PoolLink> connecting_list_;
  IntrusiveList<PoolLink> set_aside_list_;
  WaitList waiters_;                     // oldest first
  WaitList fresh_;                       // each has a connect of its own
  uint32_t connecting_ = 0;
  uint32_t fresh_connecting_ = 0;
  uint32_t set_aside_ = 0;
  uint32_t in_use_ = 0;
  bool shut_down_ = false;
  const char* shutdown_why_ = "";
  std::unique_ptr<ConnectionPool> self_;  // retired: kept until the last connection is gone
};

}  // namespace loopguard::upstream
