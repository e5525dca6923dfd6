#include "proxy/admin/status_proxy.h"

#include <cmath>

namespace loopguard::admin {

namespace {

using nlohmann::json;

json optionalMs(const std::optional<double>& seconds) {
  if (!seconds) return nullptr;
  return std::round(*seconds * 1e6) / 1e3;  // milliseconds, to the microsecond
}

const char* matchKind(config::MatchKind kind) {
  switch (kind) {
    case config::MatchKind::Prefix: return "prefix";
    case config::MatchKind::Exact: return "exact";
    case config::MatchKind::Regex: return "regex";
  }
  return "prefix";
}

json lastMinute(const metrics::RecentWindow& recent, uint64_t now_ms) {
  metrics::RecentWindow::Summary s = recent.summary(now_ms);
  json j;
  j["seconds"] = s.seconds;
  j["requests"] = s.requests;
  j["rps"] = s.seconds > 0 ? static_cast<double>(s.requests) / static_cast<double>(s.seconds) : 0.0;
  j["refusals"] = s.refusals;
  j["server_errors"] = s.server_errors;
  j["p50_ms"] = optionalMs(s.p50);
  j["p99_ms"] = optionalMs(s.p99);
  return j;
}

json perSecond(const metrics::RecentWindow& recent, uint64_t now_ms) {
  json requests = json::array();
  json refusals = json::array();
  json p99 = json::array();
  for (const metrics::RecentWindow::Second& s : recent.perSecond(now_ms)) {
    requests.push_back(s.requests);
    refusals.push_back(s.refusals);
    p99.push_back(optionalMs(s.p99));
  }
  return {{"requests", std::move(requests)}, {"refusals", std::move(refusals)},
          {"p99_ms", std::move(p99)}};
}

}  // namespace

json routesStatus(const proxy::ProxyServer& server, uint64_t now_ms) {
  const proxy::Snapshot& snapshot = *server.context().snapshot;
  json routes = json::array();
  for (size_t i = 0; i < snapshot.routes.size(); ++i) {
    const config::Route& cfg = snapshot.config().routes[i];
    const proxy::RouteRuntime& rt = snapshot.routes[i];
    const routing::Limiter& limiter = rt.limiter->limiter();
    const routing::LimiterStats& st = limiter.stats();
    const metrics::RouteMetrics& m = *rt.metrics;
    json r;
    r["name"] = cfg.name;
    r["match"] = std::string(matchKind(cfg.match.kind)) + " " + cfg.match.pattern;
    r["target"] = {{"kind", cfg.target_kind == config::TargetKind::Pool ? "pool" : "upstream"},
                   {"name", cfg.target}};
    r["in_flight"] = st.in_flight;
    r["queue_depth"] = st.queue_depth;
    std::optional<uint64_t> limit = rt.limiter->currentLimit();  // adaptive or fixed
    r["limit"] = limit ? json(*limit) : json(nullptr);
    r["limit_auto"] = limiter.limits().max_in_flight_auto;
    std::optional<uint64_t> capacity = rt.capacity();
    r["capacity"] = capacity ? json(*capacity) : json(nullptr);
    r["max_queue"] = limiter.limits().max_queue;
    r["queue_timeout_ms"] = limiter.limits().queue_timeout.count();
    r["refusals"] = {{"queue_full", m.rejected_queue_full},
                     {"queue_timeout", m.rejected_queue_timeout},
                     {"queue_evicted", m.rejected_queue_evicted},
                     {"no_workers", m.rejected_no_workers}};
    json codes = json::object();
    uint64_t total = 0;
    for (const auto& [code, n] : m.requests_by_code) {
      codes[std::to_string(code)] = n;
      total += n;
    }
    r["codes"] = std::move(codes);
    r["requests_total"] = total;
    r["demand_seconds_total"] = static_cast<double>(limiter.demandMilliseconds()) / 1000.0;
    r["last_minute"] = lastMinute(m.recent, now_ms);
    r["series"] = perSecond(m.recent, now_ms);
    routes.push_back(std::move(r));
  }
  return routes;
}

json upstreamsStatus(const proxy::ProxyServer& server) {
  json upstreams = json::array();
  for (const auto& [name, cluster] : server.clusters()) {
    json u;
    u["name"] = name;
    u["balance"] = cluster->config().balance == config::Balance::RoundRobin ? "round_robin"
                                                                           : "least_request";
    auto counters = server.upstreamCounters().find(name);
    if (counters != server.upstreamCounters().end()) {
      const upstream::UpstreamCounters& c = counters->second;
      u["connections"] = c.open_connections;
      u["errors"] = {{"connect", c.errors_connect},
                     {"reset", c.errors_reset},
                     {"timeout", c.errors_timeout}};
    }
    json endpoints = json::array();
    for (const upstream::EndpointReport& e : cluster->endpointReports()) {
      endpoints.push_back({{"name", e.name},
                           {"active", e.active},
                           {"waiting", e.waiting},
                           {"connections", e.open},
                           {"idle", e.idle},
                           {"retired", e.retired}});
    }
    u["endpoints"] = std::move(endpoints);
    upstreams.push_back(std::move(u));
  }
  return upstreams;
}

}  // namespace loopguard::admin
