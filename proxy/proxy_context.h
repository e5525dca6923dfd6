// State shared by every connection of one proxy on one loop: the current config snapshot, the
// per-route limiters and targets it points at, the buffer pool, ids and loggers. Owned by the
// ProxyServer; passed by reference (no globals).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "config/config.h"
#include "proxy/access_log.h"
#include "proxy/session/exchange_observer.h"
#include "proxy/metrics/route_metrics.h"
#include "common/net/buffer_pool.h"
#include "common/uv/timeout_queue.h"
#include "proxy/routing/auto_offload.h"
#include "proxy/routing/route_limiter.h"
#include "proxy/routing/route_table.h"
#include "proxy/upstream/target.h"

namespace loopguard::proxy {

// What a route resolves to in one snapshot.
struct RouteRuntime {
  std::shared_ptr<routing::RouteLimiter> limiter;
  std::shared_ptr<upstream::Target> target;
  std::shared_ptr<metrics::RouteMetrics> metrics;
  std::function<uint64_t()> pool_capacity;  // pool routes: the pool's ready slots

  // How many requests the route can hold at once (loopguard_route_capacity): its limit, and
  // for a pool route no more than its pool's ready slots. nullopt: unlimited.
  std::optional<uint64_t> capacity() const;
};

// Auto-offload: an `auto_offload:` route as the pool route its moved endpoints are served by
// (its name, limits, buffer_limit and timeout; the auto_offload pool; the body buffered).
struct OffloadedRoute {
  config::Route route;
  routing::CompiledRoute compiled;  // points at `route`
  RouteRuntime runtime;
};

// An immutable view of one config: an Exchange keeps the snapshot it started with.
struct Snapshot {
  explicit Snapshot(std::shared_ptr<const config::Config> c) : table(std::move(c)) {}
  const config::Config& config() const { return table.config(); }
  // At request-head time: the pool route a request of `route` goes to instead, when
  // auto-offload moved its endpoint (method, path template of `target`); else null.
  const OffloadedRoute* offloaded(const routing::CompiledRoute& route, std::string_view method,
                                  std::string_view target) const;

  routing::RouteTable table;
  std::vector<RouteRuntime> routes;  // by route index
  // Who hears of each exchange's events (the access log, latency samples, the advisor while
  // advice is on): filled when the snapshot is built.
  ExchangeObservers observers;
  // By route index; null for routes without auto_offload (or whose pool is not running here).
  std::vector<std::unique_ptr<OffloadedRoute>> offload_routes;
  routing::AutoOffload* auto_offload = nullptr;  // the decisions; outlives every snapshot
};

// X-Request-Id values: 128 bits as 32 hex digits, from a splitmix64 sequence seeded by the OS.
// Unique and unguessable enough for correlating logs; not a security token.
class RequestIds {
 public:
  RequestIds() : state_((uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()) {}
  void next(std::string& out);

 private:
  uint64_t nextWord();
  uint64_t state_;
};

struct ProxyCounters {
  uint64_t client_connections = 0;  // open now
  uint64_t requests_total = 0;
};

struct ProxyContext {
  ProxyContext(uv_loop_t* l) : loop(l), timeouts(l) {}
  uv_loop_t* loop;
  net::BufferPool buffers;
  // Connection-level deadlines (header, idle, lingering): one timer per duration, not one per
  // connection.
  uv::TimeoutQueues timeouts;
  std::shared_ptr<const Snapshot> snapshot;
  RequestIds ids;
  ProxyCounters counters;
  metrics::RouteMetrics unrouted;  // requests refused before a route was chosen
  std::shared_ptr<spdlog::logger> log;  // "proxy"
  AccessLog access_log;
  bool draining = false;
};

}  // namespace loopguard::proxy
