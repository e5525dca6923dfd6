#include "proxy/proxy_server.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

namespace loopguard::proxy {

ProxyServer::ProxyServer(uv_loop_t* loop, std::shared_ptr<const config::Config> config,
                         upstream::PoolResolver pools)
    : loop_(loop),
      pools_(std::move(pools)),
      context_(loop),
      auto_offload_(loop, spdlog::get("proxy")),
      request_states_(context_),
      listener_(
          loop, [this](uv_stream_t* s) { acceptOne(s); },
          [this] {
            return connections_.size() < context_.snapshot->config().limits.max_connections;
          }) {
  context_.log = spdlog::get("proxy");
  // From the file; ProxyApp applies --log-format on top (configureAccessLog).
  configureAccessLog(config->log.access_log, config->log.format == config::LogFormat::Json
                                                 ? AccessLogFormat::Json
                                                 : AccessLogFormat::Text);
  context_.snapshot = buildSnapshot(std::move(config));
  connections_.on_removed = [](void* self) { static_cast<ProxyServer*>(self)->onConnectionRemoved(); };
  connections_.on_removed_ctx = this;
}

ProxyServer::~ProxyServer() = default;

bool ProxyServer::start(const config::Address& listen, std::string& error) {
  if (listener_.listen(listen, error) != 0) return false;
  trim_timer_.start(kTrimPeriodMs, kTrimPeriodMs);
  trim_timer_.unref();  // never what keeps the loop alive
  return true;
}

void ProxyServer::onTrimTimer() {
  uv::Loop& loop = uv::Loop::of(context_.loop);
  context_.buffers.trim();
  // The request states of a burst that is over are freed, and so are the parts its idle
  // upstream connections kept (UpstreamTimeouts::kKeepPartsMs); the heap pages they leave go
  // back to the system. Nothing long-lived sits between them (connections and their handles
  // live in the loop's slab), so after a burst an idle connection costs its socket and little
  // else.
  request_states_.trim();
  if (loop.takeHeapFreed()) malloc_trim(0);
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
    if (now == clusters.end() || now->second != cluster) cluster->shutdown();
  }
  clusters_ = std::move(clusters);

  if (config->advice.enabled && !advisor_) {
    advisor_ = std::make_unique<advice::Advisor>(context_.loop, context_.buffers, config->advice);
    // The adaptive limits ask it which routes block their upstream's loop (docs/limits.md).
    if (loop_block_oracle_ == nullptr) setLoopBlockOracle(advisor_.get());
    advisor_observer_ = std::make_unique<AdvisorObserver>(*advisor_);
  }
  if (advisor_) advisor_->configure(config->advice);

  std::map<std::string, std::shared_ptr<routing::RouteLimiter>> limiters;
  std::map<std::string, std::shared_ptr<routing::RouteLimiter>> offload_limiters;
  std::map<std::string, std::shared_ptr<routing::AdaptiveGroup>> groups;
  for (auto& [key, group] : adaptive_groups_) group->limit().clearRoutes();
  for (const config::Route& r : config->routes) {
    RouteRuntime rt;
    upstream::PoolBinding pool;
    if (r.target_kind == config::TargetKind::Upstream) {
      const std::shared_ptr<upstream::Cluster>& cluster = clusters_.at(r.target);
      rt.target = cluster;
      // A cluster that can be without endpoints (DNS names: a scale-out pool at zero pods)
      // gates its routes like a pool's workers do: requests queue until it has some.
      if (cluster->mayHaveNoEndpoints()) {
        pool.gate = cluster.get();
        pool.add_waiting_limiter = [c = cluster.get()](const auto& l) { c->addWaitingLimiter(l); };
      }
    } else if (pools_) {
      pool = pools_(r.target);
      rt.target = pool.target;
      rt.pool_capacity = pool.capacity;
    }
    // An auto route's gate is the limit it shares with the other auto routes on its upstream
    // (which asks the pool's worker slots, or the cluster's endpoints, in turn).
    routing::CapacityGate* gate = pool.gate;
    std::shared_ptr<routing::AdaptiveGroup> group;
    if (r.limits.max_in_flight_auto) {
      bool is_pool = r.target_kind == config::TargetKind::Pool;
      group = adaptiveGroup((is_pool ? "pool:" : "upstream:") + r.target, r.target, pool.gate,
                            !is_pool, groups);
      gate = &group->limit();
    }
    auto old = limiters_.find(r.name);
    if (old != limiters_.end()) {
      rt.limiter = old->second;
      rt.limiter->limiter().reconfigure(r.limits, gate);
    } else {
      rt.limiter = std::make_shared<routing::RouteLimiter>(context_.loop, r.name, r.limits, gate);
    }
    rt.limiter->bindGroup(group);
    if (group) {
      // The group holds the limiter weakly, as long as the RouteLimiter lives.
      std::shared_ptr<routing::Limiter> limiter(rt.limiter, &rt.limiter->limiter());
      group->limit().addRoute(r.name, limiter, r.limits);
    }
    if (pool.add_waiting_limiter) pool.add_waiting_limiter(rt.limiter);
    auto& m = route_metrics_[r.name];
    if (!m) m = std::make_shared<metrics::RouteMetrics>();
    rt.metrics = m;
    limiters[r.name] = rt.limiter;
    snapshot->offload_routes.push_back(offloadedRoute(r, snapshot->routes.size(), m, offload_limiters));
    snapshot->routes.push_back(std::move(rt));
  }
  limiters_ = std::move(limiters);
  offload_limiters_ = std::move(offload_limiters);
  // The order each event is heard in: a head's latency sample before the advisor hears of it,
  // the advisor's abandon before the access line.
  snapshot->observers.add(&latency_observer_);
  if (config->advice.enabled) snapshot->observers.add(advisor_observer_.get());
  snapshot->observers.add(&access_log_observer_);
  for (ExchangeObserver* extra : extra_observers_) {
    if (!snapshot->observers.add(extra)) {
      spdlog::get("proxy")->error("too many exchange observers: one is not registered");
    }
  }
  auto_offload_.configure(*config, config->advice.enabled ? advisor_.get() : nullptr);
  snapshot->auto_offload = &auto_offload_.decisions();
  for (auto& [key, group] : adaptive_groups_) {
    if (groups.count(key) == 0) retired_groups_.push_back(group);
  }
  adaptive_groups_ = std::move(groups);
  std::erase_if(retired_groups_, [](const auto& g) { return g->limit().inFlight() == 0; });
  return snapshot;
}

// An auto_offload route as the pool route its moved endpoints take: a pool route in all but
// its name, with a limiter of its own on the pool's worker slots (kept across reloads, like a
// route's), and the route's counters.
std::unique_ptr<OffloadedRoute> ProxyServer::offloadedRoute(
    const config::Route& r, size_t index, const std::shared_ptr<metrics::RouteMetrics>& metrics,
    std::map<std::string, std::shared_ptr<routing::RouteLimiter>>& limiters) {
  if (!r.auto_offload || r.target_kind != config::TargetKind::Upstream || !pools_) return nullptr;
  upstream::PoolBinding pool = pools_(r.auto_offload->pool);
  if (!pool.target) return nullptr;
  auto out = std::make_unique<OffloadedRoute>();
  out->route = r;
  out->route.target_kind = config::TargetKind::Pool;
  out->route.target = r.auto_offload->pool;
  out->route.buffer_request = true;
  out->route.auto_offload.reset();
  // An adaptive limit learns the app's latency; on the pool, its worker slots are the bound.
  if (out->route.limits.max_in_flight_auto) {
    out->route.limits.max_in_flight_auto = false;
    out->route.limits.max_in_flight.reset();
  }
  out->compiled.route = &out->route;
  out->compiled.index = index;
  std::shared_ptr<routing::RouteLimiter> limiter;
  if (auto old = offload_limiters_.find(r.name); old != offload_limiters_.end()) {
    limiter = old->second;
    limiter->limiter().reconfigure(out->route.limits, pool.gate);
  } else {
    limiter = std::make_shared<routing::RouteLimiter>(context_.loop, r.name, out->route.limits,
                                                      pool.gate);
  }
  if (pool.add_waiting_limiter) pool.add_waiting_limiter(limiter);
  limiters[r.name] = limiter;
  out->runtime.limiter = std::move(limiter);
  out->runtime.target = pool.target;
  out->runtime.metrics = metrics;
  out->runtime.pool_capacity = pool.capacity;
  return out;
}

void ProxyServer::configureAccessLog(bool enabled, AccessLogFormat format) {
  context_.access_log.configure(enabled, format);
}

std::shared_ptr<routing::AdaptiveGroup> ProxyServer::adaptiveGroup(
    const std::string& key, const std::string& target, routing::CapacityGate* inner,
    bool per_endpoint, std::map<std::string, std::shared_ptr<routing::AdaptiveGroup>>& next) {
  if (auto it = next.find(key); it != next.end()) return it->second;
  auto old = adaptive_groups_.find(key);
  std::shared_ptr<routing::AdaptiveGroup> group;
  if (old != adaptive_groups_.end() && old->second->limit().inner() == inner) {
    group = old->second;
  } else {
    group = std::make_shared<routing::AdaptiveGroup>(context_.loop, target, inner, per_endpoint);
    group->limit().setLoopBlockOracle(loop_block_oracle_);
  }
  next[key] = group;
  return group;
}

void ProxyServer::setLoopBlockOracle(const routing::LoopBlockOracle* oracle) {
  loop_block_oracle_ = oracle;
  for (auto& [key, group] : adaptive_groups_) group->limit().setLoopBlockOracle(oracle);
}

void ProxyServer::applyConfig(std::shared_ptr<const config::Config> config) {
  context_.snapshot = buildSnapshot(std::move(config));
}

void ProxyServer::acceptOne(uv_stream_t* server) {
  ClientConnection& c = connections_.open(client_services_);
  if (c.accept(server) != 0) {
    c.close();
    return;
  }
  c.start();
}

int ProxyServer::adoptConnection(uv_os_fd_t fd) {
  ClientConnection& c = connections_.open(client_services_);
  int rc = c.stream().socket().open(fd);
  if (rc != 0) {
    c.close();
    return rc;
  }
  c.start();
  return 0;
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
  auto_offload_.stop();
  listener_.close();
  connections_.forEach([](ClientConnection& c) { c.closeIfIdle(); });
  checkDrained();
}

void ProxyServer::checkDrained() {
  if (!context_.draining || connections_.size() > 0 || !drain_done_) return;
  for (auto& [name, cluster] : clusters_) cluster->shutdown();
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

void ProxyServer::closeAll() {
  context_.draining = true;
  if (advisor_) advisor_->stop();
  auto_offload_.stop();
  listener_.close();
  connections_.forEach([](ClientConnection& c) { c.close(); });
  for (auto& [name, cluster] : clusters_) cluster->shutdown();
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
  const Snapshot& snapshot = *context_.snapshot;
  out.family("loopguard_route_demand_seconds_total", "counter",
             "Requests in flight plus queued, integrated over time: rate() is the average demand.");
  for (size_t i = 0; i < snapshot.routes.size(); ++i) {
    out.sample("loopguard_route_demand_seconds_total",
               {{"route", snapshot.config().routes[i].name}},
               static_cast<double>(snapshot.routes[i].limiter->limiter().demandMilliseconds()) /
                   1000.0);
  }
  out.family("loopguard_route_capacity", "gauge",
             "Requests a route can hold at once: its limit, or for a pool route at most its "
             "ready workers x concurrency_per_worker (no sample: unlimited).");
  for (size_t i = 0; i < snapshot.routes.size(); ++i) {
    if (std::optional<uint64_t> capacity = snapshot.routes[i].capacity()) {
      out.sample("loopguard_route_capacity", {{"route", snapshot.config().routes[i].name}},
                 *capacity);
    }
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
    out.sample("loopguard_route_rejected_total", {{"route", name}, {"reason", "queue_evicted"}},
               m->rejected_queue_evicted);
  }
  writeLimitMetrics(out);
  // Not refusals: a client that stops reading is no sign of overload, so these stay out of
  // loopguard_route_rejected_total (which the autoscalers' refusal trigger and alerts read).
  out.family("loopguard_client_timeouts_total", "counter",
             "Requests ended because the client went quiet: body (no request body bytes within "
             "timeouts.body) or send (no response bytes taken within timeouts.send).");
  each_route([&](std::string_view route, const metrics::RouteMetrics& m) {
    out.sample("loopguard_client_timeouts_total", {{"route", route}, {"kind", "body"}},
               m.client_timeouts_body);
    out.sample("loopguard_client_timeouts_total", {{"route", route}, {"kind", "send"}},
               m.client_timeouts_send);
  });
  auto_offload_.writeMetrics(out, offload_limiters_);
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
