#include "proxy/proxy_server.h"

#include <spdlog/spdlog.h>

namespace loopguard::proxy {

ProxyServer::ProxyServer(uv_loop_t* loop, std::shared_ptr<const config::Config> config,
                         PoolResolver pools)
    : loop_(loop),
      pools_(std::move(pools)),
      context_(loop),
      request_states_(context_),
      listener_(
          loop, [this](uv_stream_t* s) { acceptOne(s); },
          [this] {
            return connections_.size() < context_.snapshot->config().limits.max_connections;
          }) {
  context_.log = spdlog::get("proxy");
  context_.access = spdlog::get("access");
  context_.access_json = config->log.format == config::LogFormat::Json;
  if (!config->log.access_log) context_.access.reset();
  context_.snapshot = buildSnapshot(std::move(config));
  connections_.on_removed = [](void* self) { static_cast<ProxyServer*>(self)->onConnectionRemoved(); };
  connections_.on_removed_ctx = this;
}

ProxyServer::~ProxyServer() = default;

bool ProxyServer::start(const config::Address& listen, std::string& error) {
  return listener_.listen(listen, error) == 0;
}

std::shared_ptr<const Snapshot> ProxyServer::buildSnapshot(
    std::shared_ptr<const config::Config> config) {
  auto snapshot = std::make_shared<Snapshot>(config);
  std::map<std::string, std::shared_ptr<upstream::Cluster>> clusters;
  for (const config::Upstream& u : config->upstreams) {
    auto old = clusters_.find(u.name);
    if (old != clusters_.end() && old->second->config() == u) {
      clusters[u.name] = old->second;  // unchanged: keep its pooled connections
    } else {
      clusters[u.name] = std::make_shared<upstream::Cluster>(context_.loop, context_.buffers, u,
                                                             upstream_counters_[u.name]);
    }
  }
  for (auto& [name, cluster] : clusters_) {
    auto now = clusters.find(name);
    if (now == clusters.end() || now->second != cluster) {
      cluster->shutdown();
      retired_clusters_.push_back(cluster);  // kept until its connections are gone
    }
  }
  clusters_ = std::move(clusters);
  // A retired cluster lives until its last connection is gone (connections call back into it).
  std::erase_if(retired_clusters_, [](const auto& c) { return c->drained() && c.use_count() == 1; });

  std::map<std::string, std::shared_ptr<routing::RouteLimiter>> limiters;
  for (const config::Route& r : config->routes) {
    RouteRuntime rt;
    PoolBinding pool;
    if (r.target_kind == config::TargetKind::Upstream) {
      rt.target = clusters_.at(r.target);
    } else if (pools_) {
      pool = pools_(r.target);
      rt.target = pool.target;
    }
    auto old = limiters_.find(r.name);
    if (old != limiters_.end()) {
      rt.limiter = old->second;
      rt.limiter->limiter().reconfigure(r.limits, pool.gate);
    } else {
      rt.limiter = std::make_shared<routing::RouteLimiter>(context_.loop, r.limits, pool.gate);
    }
    if (pool.add_waiting_limiter) pool.add_waiting_limiter(rt.limiter);
    auto& m = route_metrics_[r.name];
    if (!m) m = std::make_shared<metrics::RouteMetrics>();
    rt.metrics = m;
    limiters[r.name] = rt.limiter;
    snapshot->routes.push_back(std::move(rt));
  }
  limiters_ = std::move(limiters);
  if (config->advice.enabled && !advisor_) {
    advisor_ = std::make_unique<advice::Advisor>(context_.loop, context_.buffers, config->advice);
  }
  if (advisor_) advisor_->configure(config->advice);
  snapshot->advice = config->advice.enabled ? advisor_.get() : nullptr;
  return snapshot;
}

void ProxyServer::applyConfig(std::shared_ptr<const config::Config> config) {
  context_.snapshot = buildSnapshot(std::move(config));
}

void ProxyServer::acceptOne(uv_stream_t* server) {
  auto* c = new ClientConnection(context_, connections_, request_states_);
  if (c->accept(server) != 0) {
    c->close();
    return;
  }
  c->start();
}

void ProxyServer::onConnectionRemoved() {
  listener_.resume();
  if (context_.draining) checkDrained();
}

// As the SPEC orders it: readiness turns 503 (the admin side), the listener closes at once,
// idle keep-alive connections close, in-flight requests finish with "Connection: close".
// In Kubernetes a preStop sleep keeps the pod serving until its endpoints are gone.
void ProxyServer::drain(std::function<void()> done) {
  drain_done_ = std::move(done);
  context_.draining = true;
  if (advisor_) advisor_->stop();  // its probe connections close now, not after the loop
  listener_.close();
  connections_.forEach([](ClientConnection* c) { c->closeIfIdle(); });
  checkDrained();
}

void ProxyServer::checkDrained() {
  if (!context_.draining || connections_.size() > 0 || !drain_done_) return;
  for (auto& [name, cluster] : clusters_) cluster->shutdown();
  for (auto& cluster : retired_clusters_) cluster->shutdown();
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

void ProxyServer::closeAll() {
  context_.draining = true;
  if (advisor_) advisor_->stop();
  listener_.close();
  connections_.forEach([](ClientConnection* c) { c->close(); });
  for (auto& [name, cluster] : clusters_) cluster->shutdown();
  for (auto& cluster : retired_clusters_) cluster->shutdown();
}

}  // namespace loopguard::proxy

namespace loopguard::proxy {

void ProxyServer::writeMetrics(metrics::PrometheusWriter& out) const {
  out.family("loopguard_requests_total", "counter", "Requests answered, by route and status code.");
  auto each_route = [&](auto&& fn) {
    for (const auto& [name, m] : route_metrics_) fn(std::string_view(name), *m);
    fn(std::string_view("_unrouted"), context_.unrouted);
  };
  each_route([&](std::string_view route, const metrics::RouteMetrics& m) {
    for (const auto& [code, n] : m.requests_by_code) {
      out.sample("loopguard_requests_total", {{"route", route}, {"code", std::to_string(code)}}, n);
    }
  });
  out.family("loopguard_request_duration_seconds", "histogram",
             "Time from the request head to the last response byte, by route.");
  each_route([&](std::string_view route, const metrics::RouteMetrics& m) {
    out.histogram("loopguard_request_duration_seconds", {{"route", route}}, m.duration);
  });
  out.family("loopguard_route_queue_wait_seconds", "histogram",
             "Time admitted requests waited in the route queue (0 when admitted at once).");
  for (const auto& [name, m] : route_metrics_) {
    out.histogram("loopguard_route_queue_wait_seconds", {{"route", name}}, m->queue_wait);
  }
  out.family("loopguard_route_in_flight", "gauge", "Requests holding a route slot.");
  for (const auto& [name, l] : limiters_) {
    out.sample("loopguard_route_in_flight", {{"route", name}}, l->limiter().stats().in_flight);
  }
  out.family("loopguard_route_queue_depth", "gauge", "Requests waiting in the route queue.");
  for (const auto& [name, l] : limiters_) {
    out.sample("loopguard_route_queue_depth", {{"route", name}}, l->limiter().stats().queue_depth);
  }
  out.family("loopguard_route_rejected_total", "counter",
             "Requests refused by a route's limits, by reason.");
  for (const auto& [name, m] : route_metrics_) {
    out.sample("loopguard_route_rejected_total", {{"route", name}, {"reason", "queue_full"}},
               m->rejected_queue_full);
    out.sample("loopguard_route_rejected_total", {{"route", name}, {"reason", "queue_timeout"}},
               m->rejected_queue_timeout);
    out.sample("loopguard_route_rejected_total", {{"route", name}, {"reason", "no_workers"}},
               m->rejected_no_workers);
  }
  out.family("loopguard_upstream_errors_total", "counter", "Upstream failures, by kind.");
  uint64_t upstream_connections = 0;
  for (const auto& [name, c] : upstream_counters_) {
    out.sample("loopguard_upstream_errors_total", {{"upstream", name}, {"kind", "connect"}},
               c.errors_connect);
    out.sample("loopguard_upstream_errors_total", {{"upstream", name}, {"kind", "reset"}},
               c.errors_reset);
    out.sample("loopguard_upstream_errors_total", {{"upstream", name}, {"kind", "timeout"}},
               c.errors_timeout);
    upstream_connections += c.open_connections;
  }
  out.family("loopguard_upstream_connections", "gauge",
             "Connections open (or connecting) to each upstream.");
  for (const auto& [name, c] : upstream_counters_) {
    out.sample("loopguard_upstream_connections", {{"upstream", name}}, c.open_connections);
  }
  out.family("loopguard_connections", "gauge", "Open connections, by side.");
  out.sample("loopguard_connections", {{"side", "client"}},
             static_cast<uint64_t>(context_.counters.client_connections));
  out.sample("loopguard_connections", {{"side", "upstream"}}, upstream_connections);
}

}  // namespace loopguard::proxy
