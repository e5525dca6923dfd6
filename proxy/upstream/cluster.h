// The app's own processes behind one `upstreams:` entry: resolved endpoints, balancing
// (least_request or round_robin), a ConnectionPool per endpoint, connect failures moved on to
// the next endpoint, and periodic DNS re-resolution for names (Kubernetes headless services).
//
// A cluster with DNS names is also the CapacityGate of its routes' limiters, closed while no
// name resolves to anything (a scale-out pool's Deployment with no ready pod: its headless
// Service answers NXDOMAIN; or before the first lookup completes). Requests then wait in the
// route's queue within max_queue and queue_timeout, as they wait for a worker of a pool, and
// go as soon as a lookup finds addresses. Endpoints that exist but refuse connections are
// another matter: the gate is open and such requests fail with 502 at once.
#pragma once

#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/intrusive_list.h"
#include "common/net/buffer_pool.h"
#include "common/uv/timer.h"
#include "config/config.h"
#include "proxy/routing/limiter.h"
#include "proxy/upstream/connection_pool.h"
#include "proxy/upstream/target.h"

namespace loopguard::routing {
class RouteLimiter;
}

namespace loopguard::upstream {

// Survive reloads (the ProxyServer keeps them by upstream name).
struct UpstreamCounters {
  uint64_t errors_connect = 0;
  uint64_t errors_reset = 0;
  uint64_t errors_timeout = 0;
  uint64_t open_connections = 0;
};

// One endpoint as /status shows it.
struct EndpointReport {
  std::string name;
  uint32_t active = 0;      // requests in progress on it
  uint32_t waiting = 0;     // requests waiting for a connection to it
  uint32_t open = 0;        // connections open or connecting
  uint32_t idle = 0;        // of which idle in the keep-alive pool
  bool retired = false;     // gone from DNS, finishing what it has
};

class Cluster final : public Target, public routing::CapacityGate {
 public:
  Cluster(uv_loop_t* loop, net::BufferPool& buffers, const config::Upstream& config,
          UpstreamCounters& counters);
  // Pools whose connections are still closing outlive it (ConnectionPool::retire).
  ~Cluster() override;
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const std::string& name() const override { return config_.name; }
  AcquireResult acquire(TargetWaiter& waiter, const AcquireOptions& options) override;
  void release(Lease* lease, bool reusable) override;
  config::Duration responseTimeout() const override { return config_.response_timeout; }
  config::Duration readTimeout() const override { return config_.read_timeout; }
  void recordError(UpstreamErrorKind kind) override;
  // While the gate is closed: why queued requests wait.
  const char* queueHoldReason() const override;

  // The upstream is gone from the config (or the proxy stops): idle connections close, waiting
  // requests fail (from the ready queue, not from inside this call), DNS refreshes stop;
  // requests in flight finish.
  void shutdown();
  const config::Upstream& config() const { return config_; }
  std::vector<EndpointReport> endpointReports() const;

  // Whether its routes' limiters should use it as their gate: it has names to resolve, so it
  // can be without endpoints for a while.
  bool mayHaveNoEndpoints() const { return has_dns_names_; }
  // A route limiter that waits on this gate, pumped when endpoints appear (held weakly).
  void addWaitingLimiter(const std::shared_ptr<routing::RouteLimiter>& limiter);

  // CapacityGate: open while any endpoint is live; no per-request units.
  bool tryTake() override { return hasCapacity(); }
  void giveBack() override;
  bool hasCapacity() const override;

 private:
  // One resolved address: its connection pool, and whether DNS still lists it.
  struct Endpoint final : ConnectionPool::Owner {
    Endpoint(Cluster& cluster, std::string source, Destination destination);
    ~Endpoint() override;
    const std::string& name() const { return pool->destination().name; }
    void onConnectFailed(ConnectionPool&, TargetWaiter* charged, int status) override;
    void onConnectionClosed(ConnectionPool&, UpstreamConnection&, bool in_use) override;

    Cluster& cluster;
    std::string source;  // the configured spelling it came from (for DNS refreshes)
    bool retired = false;  // gone from DNS: no new requests; removed once its last connection is
    std::unique_ptr<ConnectionPool> pool;
  };
  struct DnsQuery;

  PoolSettings poolSettings();
  Endpoint* pick();
  // `waiter` lost its connect at `from`: the next live endpoint, or a failure once every
  // endpoint has been tried.
  void failOver(Endpoint& from, TargetWaiter& waiter, const char* why);
  void onConnectFailed(Endpoint& endpoint, TargetWaiter* charged, int status);
  void removeIfDone(Endpoint& endpoint);

  void resolveAll();
  void onResolveTimer();
  // `none`: the name authoritatively has no address (NXDOMAIN, or no A/AAAA record): its
  // endpoints are retired. Otherwise an empty `addrs` is a failed lookup, which keeps them.
  void onResolved(const std::string& source, const std::vector<sockaddr_storage>& addrs,
                  bool none);
  void flushDnsWaiters();
  void pumpWaiting();

  uv_loop_t* loop_;
  net::BufferPool& buffers_;
  config::Upstream config_;
  UpstreamCounters& counters_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;  // live and retired
  WaitList dns_waiters_;  // requests that came before the first resolution
  // Lookups in flight. A query outlives the cluster if it must (libuv owns its request until
  // the callback); leaving this list, when the cluster goes, is how it learns it is orphaned.
  IntrusiveList<DnsQuery> dns_queries_;
  std::vector<std::weak_ptr<routing::RouteLimiter>> limiters_;  // waiting on the gate
  uv::Timer resolve_timer_;
  size_t rr_next_ = 0;
  bool has_dns_names_ = false;
  bool looked_up_ = false;  // a lookup has completed (failed or not)
  std::optional<bool> reported_live_;  // what the log said last about having endpoints
  bool shut_down_ = false;
};

}  // namespace loopguard::upstream
