// One proxy on one loop: the listener, every client connection, the per-route limiters and
// the upstream clusters, built from a config snapshot and swapped whole on reload.
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/advice/advisor.h"
#include "proxy/auto_offload_driver.h"
#include "proxy/session/exchange_listeners.h"
#include "proxy/metrics/prometheus.h"
#include "proxy/proxy_context.h"
#include "common/uv/timer.h"
#include "proxy/server/client_connection.h"
#include "proxy/server/listener.h"
#include "proxy/upstream/cluster.h"

namespace loopguard::proxy {

class ProxyServer {
 public:
  static constexpr uint64_t kTrimPeriodMs = 1'000;  // how often the buffer pool is trimmed
  ProxyServer(uv_loop_t* loop, std::shared_ptr<const config::Config> config,
              upstream::PoolResolver pools = nullptr);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Binds the listener. Returns false with `error` set on failure.
  bool start(const config::Address& listen, std::string& error);
  const std::string& boundAddress() const { return listener_.boundAddress(); }
  // Serves a connected unix-domain socket that did not come through the listener (one end of a
  // socketpair: the relay's unit tests). Takes the fd over. 0, or a libuv error.
  int adoptConnection(uv_os_fd_t fd);

  // The access log's switch and format (log.access_log, log.format or --log-format).
  void configureAccessLog(bool enabled, AccessLogFormat format);

  // Reload: new requests use `config`; in-flight ones finish under the snapshot they have.
  void applyConfig(std::shared_ptr<const config::Config> config);
  // One more listener of every exchange's events (proxy/session/exchange_observer.h), heard after the
  // built-in ones in every snapshot built from now on (the next applyConfig). It must outlive
  // this server.
  void addExchangeObserver(ExchangeObserver& observer) { extra_observers_.push_back(&observer); }

  // Graceful drain: stop accepting, close idle connections, let in-flight requests finish
  // (their responses say "Connection: close"). `done` runs once every connection is gone.
  void drain(std::function<void()> done);
  // Closes every connection now (the drain budget ran out, or a second signal).
  void closeAll();

  bool draining() const { return context_.draining; }
  const ProxyContext& context() const { return context_; }
  ProxyContext& context() { return context_; }
  size_t connections() const { return connections_.size(); }
  const std::map<std::string, upstream::UpstreamCounters>& upstreamCounters() const {
    return upstream_counters_;
  }
  const std::map<std::string, std::shared_ptr<routing::RouteLimiter>>& limiters() const {
    return limiters_;
  }
  const std::map<std::string, std::shared_ptr<upstream::Cluster>>& clusters() const {
    return clusters_;
  }
  // Per-route counters by route name (routes removed by a reload included).
  const std::map<std::string, std::shared_ptr<metrics::RouteMetrics>>& routeMetrics() const {
    return route_metrics_;
  }
  // Route, upstream and connection families of /metrics.
  void writeMetrics(metrics::PrometheusWriter& out) const;
  // The loop-block advisor; null until advice was enabled once (it then stays, so what it
  // learned survives a reload that turns it off and on again).
  advice::Advisor* advisor() { return advisor_.get(); }
  // Auto-offload's decisions (which endpoints of auto_offload routes the pools serve).
  AutoOffloadDriver& autoOffload() { return auto_offload_; }
  // The adaptive limit and queue order families (limit_metrics.cc).
  void writeLimitMetrics(metrics::PrometheusWriter& out) const;
  // The loop-block advisor's answer to "does this route block its upstream's loop?", for every
  // adaptive limit now and after reloads (null: none; nothing is named). Must outlive the server.
  void setLoopBlockOracle(const routing::LoopBlockOracle* oracle);
  // The AdaptiveGroup of each upstream ("upstream:NAME") or pool ("pool:NAME") with auto routes.
  const std::map<std::string, std::shared_ptr<routing::AdaptiveGroup>>& adaptiveGroups() const {
    return adaptive_groups_;
  }

 private:
  std::shared_ptr<const Snapshot> buildSnapshot(std::shared_ptr<const config::Config> config);
  // The group `key` of the snapshot being built: kept from the last one unless its inner gate
  // changed (a pool, or a cluster with DNS names, replaced), else new.
  std::shared_ptr<routing::AdaptiveGroup> adaptiveGroup(
      const std::string& key, const std::string& target, routing::CapacityGate* inner,
      bool per_endpoint, std::map<std::string, std::shared_ptr<routing::AdaptiveGroup>>& next);
  std::unique_ptr<OffloadedRoute> offloadedRoute(
      const config::Route& route, size_t index,
      const std::shared_ptr<metrics::RouteMetrics>& metrics,
      std::map<std::string, std::shared_ptr<routing::RouteLimiter>>& limiters);
  void acceptOne(uv_stream_t* server);
  void onConnectionRemoved();
  void checkDrained();
  void onTrimTimer();

  uv_loop_t* loop_;
  upstream::PoolResolver pools_;
  ProxyContext context_;
  std::unique_ptr<advice::Advisor> advisor_;  // after context_: it uses its buffer pool
  // The exchanges' listeners (proxy/session/exchange_listeners.h), in every snapshot this builds; before
  // the connections, whose exchanges call them.
  LatencySampleObserver latency_observer_;
  std::unique_ptr<AdvisorObserver> advisor_observer_;  // with advisor_
  AccessLogObserver access_log_observer_{context_.access_log};
  std::vector<ExchangeObserver*> extra_observers_;  // addExchangeObserver()
  AutoOffloadDriver auto_offload_;            // outlives every snapshot (they point at it)
  // Declared before the connections: a connection still open when the server goes gives its
  // request state back as it is destroyed.
  RequestStatePool request_states_;
  ConnectionSet connections_;
  ClientServices client_services_{context_, connections_, request_states_};
  Listener listener_;
  // Once a second the buffer pool and the request-state pool give back what the traffic did not
  // need (BufferPool::trim, RequestStatePool::trim): what a burst leaves does not stay resident.
  uv::Timer trim_timer_{loop_, this, &uv::bindMethod<ProxyServer, &ProxyServer::onTrimTimer>};
  std::map<std::string, std::shared_ptr<routing::RouteLimiter>> limiters_;  // by route name
  // By route name: the limiters of auto_offload routes' moved endpoints, on their pools.
  std::map<std::string, std::shared_ptr<routing::RouteLimiter>> offload_limiters_;
  // By upstream name. A cluster left out by a reload is shut down and dropped; the snapshots of
  // requests still in flight keep it until they finish, and its pools outlive it until their
  // connections are closed (ConnectionPool::retire).
  std::map<std::string, std::shared_ptr<upstream::Cluster>> clusters_;
  std::map<std::string, upstream::UpstreamCounters> upstream_counters_;     // survive reloads
  std::map<std::string, std::shared_ptr<metrics::RouteMetrics>> route_metrics_;  // survive too
  // By "upstream:NAME" / "pool:NAME": the adaptive limits of auto routes.
  std::map<std::string, std::shared_ptr<routing::AdaptiveGroup>> adaptive_groups_;
  // Groups no snapshot uses any more, kept while limiters still hold units of them.
  std::vector<std::shared_ptr<routing::AdaptiveGroup>> retired_groups_;
  const routing::LoopBlockOracle* loop_block_oracle_ = nullptr;
  std::function<void()> drain_done_;
};

}  // namespace loopguard::proxy
