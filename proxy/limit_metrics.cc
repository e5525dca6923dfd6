// The /metrics families of route limits, queue order and the adaptive limits (README "Reading
// the overload metrics" says how to read them).
#include <limits>
#include <string>

#include "proxy/proxy_server.h"

namespace loopguard::proxy {

void ProxyServer::writeLimitMetrics(metrics::PrometheusWriter& out) const {
  out.family("loopguard_route_limit", "gauge",
             "Requests a route may have in flight now: max_in_flight, or the adaptive limit "
             "(shared by the auto routes of one upstream) capped by the route's own.");
  for (const auto& [name, l] : limiters_) {
    std::optional<uint64_t> limit = l->currentLimit();
    if (limit) {
      out.sample("loopguard_route_limit", {{"route", name}}, *limit);
    } else {
      out.sample("loopguard_route_limit", {{"route", name}},
                 std::numeric_limits<double>::infinity());
    }
  }
  out.family("loopguard_route_queue_refused_wait_seconds", "histogram",
             "Time refused requests waited in the route queue before their answer.");
  for (const auto& [name, m] : route_metrics_) {
    out.histogram("loopguard_route_queue_refused_wait_seconds", {{"route", name}},
                  m->queue_refused_wait);
  }
  out.family("loopguard_route_early_refusals_total", "counter",
             "Of the queue_timeout refusals, those made before queue_timeout: at the short "
             "target of a standing queue (queue_order: adaptive).");
  for (const auto& [name, l] : limiters_) {
    out.sample("loopguard_route_early_refusals_total", {{"route", name}},
               l->limiter().stats().early_refusals);
  }
  out.family("loopguard_route_queue_lifo", "gauge",
             "1 while the route queue serves the newest request first.");
  out.family("loopguard_route_lifo_switches_total", "counter",
             "Times an adaptive route queue turned from FIFO to LIFO.");
  for (const auto& [name, l] : limiters_) {
    const routing::QueuePolicy& p = l->limiter().policy();
    out.sample("loopguard_route_queue_lifo", {{"route", name}}, uint64_t{p.lifoNow() ? 1u : 0u});
    out.sample("loopguard_route_lifo_switches_total", {{"route", name}}, p.lifoSwitches());
  }
  out.family("loopguard_route_queue_target_seconds", "gauge",
             "Adaptive queue order: how long a request may wait once a queue stands.");
  out.family("loopguard_route_queue_interval_seconds", "gauge",
             "Adaptive queue order: how long a queue must stay non-empty to count as standing.");
  for (const auto& [name, l] : limiters_) {
    const routing::QueuePolicy& p = l->limiter().policy();
    if (p.order() != config::QueueOrder::Adaptive) continue;
    out.sample("loopguard_route_queue_target_seconds", {{"route", name}},
               static_cast<double>(p.targetMs()) / 1000.0);
    out.sample("loopguard_route_queue_interval_seconds", {{"route", name}},
               static_cast<double>(p.intervalMs()) / 1000.0);
  }
  out.family("loopguard_route_upstream_seconds", "gauge",
             "Smoothed upstream time of a route (request written to response head), by "
             "percentile (a gauge, not a summary).");
  for (const auto& [name, l] : limiters_) {
    const routing::RouteLatency& latency = l->latency();
    if (!latency.p50Ms() || !latency.p90Ms()) continue;
    out.sample("loopguard_route_upstream_seconds", {{"route", name}, {"percentile", "50"}},
               *latency.p50Ms() / 1000.0);
    out.sample("loopguard_route_upstream_seconds", {{"route", name}, {"percentile", "90"}},
               *latency.p90Ms() / 1000.0);
  }

  // One adaptive limit per upstream or pool with auto routes (Envoy's controller stats).
  out.family("loopguard_adaptive_limit", "gauge", "Adaptive concurrency limit of an upstream.");
  out.family("loopguard_adaptive_in_flight", "gauge", "Requests holding a unit of it.");
  out.family("loopguard_adaptive_endpoint_limit", "gauge", "Its share from one endpoint.");
  out.family("loopguard_adaptive_gradient", "gauge",
             "Last gradient of an endpoint (tolerated / sample RTT, clamped to [0.5, 2]; 0.9 "
             "after a drop).");
  out.family("loopguard_adaptive_min_rtt_seconds", "gauge",
             "Baseline (no-load) upstream time of a route, from live traffic.");
  out.family("loopguard_adaptive_sample_rtt_seconds", "gauge",
             "Median upstream time of a route's last window.");
  out.family("loopguard_adaptive_blocks_loop", "gauge",
             "1 when the loop-block advisor names the route as blocking the upstream's loop.");
  for (const auto& [key, group] : adaptive_groups_) {
    const routing::AdaptiveLimit& a = group->limit();
    std::string kind = key.substr(0, key.find(':'));
    metrics::Labels labels = {{"kind", kind}, {"target", a.target()}};
    out.sample("loopguard_adaptive_limit", labels, a.limit());
    out.sample("loopguard_adaptive_in_flight", labels, a.inFlight());
    for (const auto& e : a.endpoints()) {
      metrics::Labels el = {{"kind", kind}, {"target", a.target()}, {"endpoint", e.name}};
      out.sample("loopguard_adaptive_endpoint_limit", el, e.limit);
      out.sample("loopguard_adaptive_gradient", el, e.gradient);
    }
    for (const auto& r : a.routes()) {
      metrics::Labels rl = {{"kind", kind}, {"target", a.target()}, {"route", r.name}};
      if (r.min_rtt_ms) {
        out.sample("loopguard_adaptive_min_rtt_seconds", rl, *r.min_rtt_ms / 1000.0);
      }
      out.sample("loopguard_adaptive_sample_rtt_seconds", rl, r.sample_rtt_ms / 1000.0);
      out.sample("loopguard_adaptive_blocks_loop", rl, uint64_t{r.blocks_loop ? 1u : 0u});
    }
  }
}

}  // namespace loopguard::proxy
