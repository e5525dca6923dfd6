// The app's own processes behind one `upstreams:` entry: resolved endpoints, balancing
// (least_request or round_robin), a keep-alive pool per endpoint, connect with fallback to the
// next endpoint, and periodic DNS re-resolution for names (Kubernetes headless services).
#pragma once

#include <uv.h>

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "proxy/net/buffer_pool.h"
#include "proxy/upstream/target.h"
#include "proxy/upstream/upstream_connection.h"
#include "proxy/uv/timer.h"

namespace loopguard::upstream {

struct UpstreamCounters {
  uint64_t errors_connect = 0;
  uint64_t errors_reset = 0;
  uint64_t errors_timeout = 0;
  uint64_t open_connections = 0;
};

// A request's way to a new connection: the endpoint it tries, how many it has tried.
struct ConnectAttempt {
  TargetWaiter* waiter = nullptr;  // null once cancelled or served by another connection
  uint32_t tries = 0;
  size_t endpoint_index = 0;
  bool fresh = false;
};

// One resolved address of an upstream.
struct Endpoint {
  std::string name;  // "127.0.0.1:8000" or "unix:/path"
  bool is_unix = false;
  std::string unix_path;
  sockaddr_storage addr{};
  std::string source;  // the configured spelling it came from (for DNS refreshes)
  uint32_t active = 0;  // requests in progress (least_request)
  uint32_t open = 0;    // connections open or connecting
  UpstreamConnection* idle_head = nullptr;
  uint32_t idle_count = 0;
  // Connects started for a request that still waits, oldest first (entries go stale when the
  // request is served or cancelled; they are skipped then). A connection that frees up serves
  // the oldest such request at once instead of going idle or being closed while it waits for
  // its own handshake.
  std::deque<UpstreamConnection*> waiting;
  // Requests with no connect of their own: `connecting` had reached the cap. Served first by
  // any connection that frees up, or given a connect as one of the handshakes ends.
  std::deque<ConnectAttempt> queued;
  uint32_t connecting = 0;  // connects in progress
  bool retired = false;  // gone from DNS: no new requests, closes when its last one ends
};

class Cluster final : public Target, private ConnectionOwner {
 public:
  Cluster(uv_loop_t* loop, net::BufferPool& buffers, const config::Upstream& config,
          UpstreamCounters& counters);
  ~Cluster() override;
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const std::string& name() const override { return config_.name; }
  AcquireResult acquire(TargetWaiter& waiter, const AcquireOptions& options) override;
  void cancel(TargetWaiter& waiter) override;
  void release(UpstreamConnection* connection, bool reusable) override;
  config::Duration responseTimeout() const override { return config_.response_timeout; }
  config::Duration readTimeout() const override { return config_.read_timeout; }
  void recordError(UpstreamErrorKind kind) override;

  // Closes idle connections and stops DNS refreshes; in-flight requests finish.
  void shutdown();
  const config::Upstream& config() const { return config_; }
  size_t endpointCount() const { return endpoints_.size(); }
  bool drained() const;  // no connection open or connecting

 private:
  using Attempt = ConnectAttempt;
  struct DnsQuery;

  Endpoint* pick();
  static size_t load(const Endpoint& endpoint);  // what least_request compares
  UpstreamConnection* popIdle(Endpoint& endpoint);
  // Connects in progress per endpoint before further requests queue for a connection instead.
  uint32_t maxConnecting() const;
  // The request of `endpoint` to serve with a connection that just freed up: a queued one
  // first, then the oldest still waiting for its own connect (taken off it: that connect will
  // serve whoever waits next, or go idle). Null if none.
  TargetWaiter* nextWaiter(Endpoint& endpoint);
  // Starts connects for queued requests while below the cap.
  void connectQueued(Endpoint& endpoint);
  // Sends every queued request of `endpoint` elsewhere (next endpoint, or fails it).
  void failOverQueued(Endpoint& endpoint, const char* why);
  // Hands a free, detached connection to a waiting request, or else keeps it idle (or closes
  // it when the idle set is full).
  void reuseOrPark(Endpoint& endpoint, UpstreamConnection* connection, bool reused);
  void pushIdle(Endpoint& endpoint, UpstreamConnection* connection);
  void removeIdle(Endpoint& endpoint, UpstreamConnection* connection);
  bool startConnect(Endpoint& endpoint, Attempt attempt);
  // Starts a connect to the next untried endpoint; false when every one was tried.
  bool connectNext(Attempt attempt);
  void connectNextOrFail(Attempt attempt, UpstreamErrorKind kind, const char* why);

  void onConnectResult(UpstreamConnection* connection, int status) override;
  void onIdleClosed(UpstreamConnection* connection) override;
  void onConnectionGone(UpstreamConnection* connection) override;

  void resolveAll();
  void onResolveTimer();
  void onResolved(const std::string& source, const std::vector<sockaddr_storage>& addrs);
  void flushDnsWaiters();

  uv_loop_t* loop_;
  net::BufferPool& buffers_;
  config::Upstream config_;
  UpstreamCounters& counters_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;  // live and retired
  std::unordered_map<UpstreamConnection*, Attempt> connecting_;
  std::vector<std::pair<TargetWaiter*, AcquireOptions>> dns_waiters_;
  std::vector<DnsQuery*> dns_queries_;
  uv::Timer resolve_timer_;
  size_t rr_next_ = 0;
  bool has_dns_names_ = false;
  bool shut_down_ = false;
};

}  // namespace loopguard::upstream
