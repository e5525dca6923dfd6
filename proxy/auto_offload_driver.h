// Auto-offload on the loop: once a second (the advisor's refresh period) it shows the advisor's
// blocking endpoints of every `auto_offload:` route to the decisions (routing::AutoOffload),
// logs each endpoint that moves at warn with its figures, and answers the request path, the
// metrics and GET /advice. Owned by the ProxyServer, so what it decided survives reloads.
//
// The request path asks the snapshot (Snapshot::offloaded()), which holds, per auto_offload
// route, the route as a pool route: the same name, limits, buffer_limit and timeout, to the
// auto_offload pool, buffering the body as pool routes do.
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "common/uv/timer.h"
#include "config/config.h"
#include "proxy/advice/advisor.h"
#include "proxy/metrics/prometheus.h"
#include "proxy/routing/auto_offload.h"
#include "proxy/routing/route_limiter.h"

namespace loopguard::proxy {

class AutoOffloadDriver {
 public:
  static constexpr uint64_t kReviewEveryMs = 1000;

  AutoOffloadDriver(uv_loop_t* loop, std::shared_ptr<spdlog::logger> log);
  AutoOffloadDriver(const AutoOffloadDriver&) = delete;
  AutoOffloadDriver& operator=(const AutoOffloadDriver&) = delete;

  // At start and at every reload. `advisor` is null when advice is off (then nothing moves;
  // the loader refuses auto_offload without the advisor).
  void configure(const config::Config& config, advice::Advisor* advisor);
  void stop();

  routing::AutoOffload& decisions() { return decisions_; }
  const routing::AutoOffload& decisions() const { return decisions_; }

  // POST /advice/reset: every moved endpoint goes back to the app.
  void reset();
  // loopguard_auto_offloaded_endpoints{route}, and the in-flight and queued requests of the
  // moved endpoints (`limiters`: their limiters by route name).
  void writeMetrics(
      metrics::PrometheusWriter& out,
      const std::map<std::string, std::shared_ptr<routing::RouteLimiter>>& limiters) const;
  // GET /advice: `offloaded`, `since` and `offload_pool` on each endpoint of the report.
  void annotateAdvice(nlohmann::json& report) const;

 private:
  void onTimer();

  uv_loop_t* loop_;
  std::shared_ptr<spdlog::logger> log_;
  routing::AutoOffload decisions_;
  advice::Advisor* advisor_ = nullptr;
  uv::Timer timer_;
};

}  // namespace loopguard::proxy
