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
#include "proxy/metrics/prometheus.h"
#include "proxy/proxy_context.h"
#include "proxy/server/client_connection.h"
#include "proxy/server/listener.h"
#include "proxy/upstream/cluster.h"
#include "proxy/uv/timer.h"

namespace loopguard::proxy {

// How a `pool:` route reaches its workers; supplied by offload/ (the proxy knows no processes).
struct PoolBinding {
  std::shared_ptr<upstream::Target> target;
  routing::CapacityGate* gate = nullptr;  // free worker slots
  // The pool wants to be told about the limiters that wait on its gate, to pump them.
  std::function<void(const std::shared_ptr<routing::RouteLimiter>&)> add_waiting_limiter;
};
using PoolResolver = std::function<PoolBinding(const std::string& pool_name)>;

class ProxyServer {
 public:
  ProxyServer(uv_loop_t* loop, std::shared_ptr<const config::Config> config,
              PoolResolver pools = nullptr);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Binds the listener. Returns false with `error` set on failure.
  bool start(const config::Address& listen, std::string& error);
  const std::string& boundAddress() const { return listener_.boundAddress(); }

  // Reload: new requests use `config`; in-flight ones finish under the snapshot they have.
  void applyConfig(std::shared_ptr<const config::Config> config);

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
  // Route, upstream and connection families of /metrics.
  void writeMetrics(metrics::PrometheusWriter& out) const;
  // The loop-block advisor; null until advice was enabled once (it then stays, so what it
  // learned survives a reload that turns it off and on again).
  advice::Advisor* advisor() { return advisor_.get(); }

 private:
  std::shared_ptr<const Snapshot> buildSnapshot(std::shared_ptr<const config::Config> config);
  void acceptOne(uv_stream_t* server);
  void onConnectionRemoved();
  void checkDrained();

  uv_loop_t* loop_;
  PoolResolver pools_;
  ProxyContext context_;
  std::unique_ptr<advice::Advisor> advisor_;  // after context_: it uses its buffer pool
  ConnectionSet connections_;
  RequestStatePool request_states_;
  Listener listener_;
  std::map<std::string, std::shared_ptr<routing::RouteLimiter>> limiters_;  // by route name
  std::map<std::string, std::shared_ptr<upstream::Cluster>> clusters_;      // by upstream name
  std::vector<std::shared_ptr<upstream::Cluster>> retired_clusters_;
  std::map<std::string, upstream::UpstreamCounters> upstream_counters_;     // survive reloads
  std::map<std::string, std::shared_ptr<metrics::RouteMetrics>> route_metrics_;  // survive too
  std::function<void()> drain_done_;
};

}  // namespace loopguard::proxy
