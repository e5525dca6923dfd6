#include "config/to_json.h"

#include "config/values.h"

namespace loopguard::config {
namespace {

using nlohmann::json;

json addressOrNull(const std::optional<Address>& address) {
  return address ? json(address->toString()) : json(nullptr);
}

json toJson(const Upstream& upstream) {
  json endpoints = json::array();
  for (const Address& endpoint : upstream.endpoints) endpoints.push_back(endpoint.toString());
  return json{
      {"endpoints", std::move(endpoints)},
      {"balance", upstream.balance == Balance::RoundRobin ? "round_robin" : "least_request"},
      {"connect_timeout", formatDuration(upstream.connect_timeout)},
      {"response_timeout", formatDuration(upstream.response_timeout)},
      {"max_idle_connections", upstream.max_idle_connections},
      {"idle_timeout", formatDuration(upstream.idle_timeout)},
      {"resolve_every", formatDuration(upstream.resolve_every)},
  };
}

json toJson(const Pool& pool) {
  return json{
      {"command", pool.command},
      {"workers", pool.workers},
      {"concurrency_per_worker", pool.concurrency_per_worker},
      {"env", pool.env},
      {"workdir", pool.workdir},
      {"ready",
       {{"path", pool.ready.path ? json(*pool.ready.path) : json(nullptr)},
        {"timeout", formatDuration(pool.ready.timeout)}}},
      {"request_timeout", formatDuration(pool.request_timeout)},
      {"max_requests", pool.max_requests},
      {"max_rss", pool.max_rss},
      {"restart_backoff",
       {{"initial", formatDuration(pool.restart_backoff.initial)},
        {"max", formatDuration(pool.restart_backoff.max)}}},
      {"slow_after", formatDuration(pool.slow_after)},
      {"on_slow", pool.on_slow},
  };
}

const char* matchKey(MatchKind kind) {
  switch (kind) {
    case MatchKind::Prefix:
      return "prefix";
    case MatchKind::Exact:
      return "exact";
    case MatchKind::Regex:
      return "regex";
  }
  return "prefix";
}

json toJson(const Route& route) {
  json match = json::object();
  match[matchKey(route.match.kind)] = route.match.pattern;
  // Omitted rather than empty: an explicit empty methods list is a config error.
  if (!route.match.methods.empty()) match["methods"] = route.match.methods;
  if (!route.match.host.empty()) match["host"] = route.match.host;
  json out{
      {"name", route.name},
      {"match", std::move(match)},
      {"limits",
       {{"max_in_flight",
         route.limits.max_in_flight ? json(*route.limits.max_in_flight) : json(nullptr)},
        {"max_queue", route.limits.max_queue},
        {"queue_timeout", formatDuration(route.limits.queue_timeout)},
        {"overflow_status", route.limits.overflow_status}}},
      {"buffer_request", route.buffer_request},
      {"buffer_limit", route.buffer_limit},
      {"timeout", formatDuration(route.timeout)},
  };
  out[route.target_kind == TargetKind::Pool ? "pool" : "upstream"] = route.target;
  return out;
}

}  // namespace

json configToJson(const Config& config) {
  json upstreams = json::object();
  for (const Upstream& upstream : config.upstreams) upstreams[upstream.name] = toJson(upstream);
  json pools = json::object();
  for (const Pool& pool : config.pools) pools[pool.name] = toJson(pool);
  json routes = json::array();
  for (const Route& route : config.routes) routes.push_back(toJson(route));
  json offload = nullptr;
  if (config.offload) {
    offload = json{{"listen", config.offload->listen.toString()}, {"pool", config.offload->pool}};
  }
  return json{
      {"listen", addressOrNull(config.listen)},
      {"admin", {{"listen", addressOrNull(config.admin.listen)}}},
      {"log",
       {{"level", config.log.level},
        {"format", config.log.format == LogFormat::Json ? "json" : "text"},
        {"access_log", config.log.access_log}}},
      {"limits",
       {{"max_connections", config.limits.max_connections},
        {"max_header_bytes", config.limits.max_header_bytes},
        {"max_body_bytes", config.limits.max_body_bytes}}},
      {"timeouts",
       {{"header", formatDuration(config.timeouts.header)},
        {"idle", formatDuration(config.timeouts.idle)},
        {"drain", formatDuration(config.timeouts.drain)}}},
      {"upstreams", std::move(upstreams)},
      {"pools", std::move(pools)},
      {"routes", std::move(routes)},
      {"offload", std::move(offload)},
      {"advice",
       {{"enabled", config.advice.enabled},
        {"probe", config.advice.probe},
        {"probe_path", config.advice.probe_path},
        {"min_samples", config.advice.min_samples}}},
  };
}

}  // namespace loopguard::config
