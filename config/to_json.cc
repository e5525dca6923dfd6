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
      {"read_timeout", formatDuration(upstream.read_timeout)},
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

const char* queueOrderName(QueueOrder order) {
  switch (order) {
    case QueueOrder::Fifo:
      return "fifo";
    case QueueOrder::Lifo:
      return "lifo";
    case QueueOrder::Adaptive:
      return "adaptive";
  }
  return "fifo";
}

json toJson(const RouteLimits& limits) {
  json out{{"max_in_flight", limits.max_in_flight_auto ? json("auto")
                             : limits.max_in_flight    ? json(*limits.max_in_flight)
                                                       : json(nullptr)},
           {"max_queue", limits.max_queue},
           {"queue_timeout", formatDuration(limits.queue_timeout)},
           {"queue_order", queueOrderName(limits.queue_order)},
           {"overflow_status", limits.overflow_status}};
  // The bounds mean something only for an adaptive limit (the loader refuses them otherwise).
  if (limits.max_in_flight_auto) {
    out["max_in_flight_min"] = limits.max_in_flight_min;
    out["max_in_flight_max"] = limits.max_in_flight_max;
  }
  return out;
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
      {"limits", toJson(route.limits)},
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
    const OffloadConfig& o = *config.offload;
    offload = json{{"listen", o.listen.toString()},
                   {"pool", o.pool},
                   {"max_queue", o.max_queue},
                   {"queue_timeout", o.queue_timeout ? json(formatDuration(*o.queue_timeout))
                                                     : json(nullptr)}};
  }
  return json{
      {"listen", addressOrNull(config.listen)},
      {"admin",
       {{"listen", addressOrNull(config.admin.listen)},
        {"token_file", config.admin.token_file ? json(*config.admin.token_file) : json(nullptr)}}},
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
        {"body", formatDuration(config.timeouts.body)},
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

json configToJsonRedacted(const Config& config) {
  json out = configToJson(config);
  for (auto& [name, pool] : out["pools"].items()) {
    for (auto& [key, value] : pool["env"].items()) value = kRedacted;
  }
  return out;
}

}  // namespace loopguard::config
