#include "proxy/auto_offload_driver.h"

#include "proxy/access_log.h"  // formatUtcMillis

#include <spdlog/spdlog.h>

#include <chrono>

namespace loopguard::proxy {

namespace {

int64_t wallMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

AutoOffloadDriver::AutoOffloadDriver(uv_loop_t* loop, std::shared_ptr<spdlog::logger> log)
    : loop_(loop),
      log_(std::move(log)),
      timer_(loop, this, &uv::bindTimer<AutoOffloadDriver, &AutoOffloadDriver::onTimer>) {}

void AutoOffloadDriver::configure(const config::Config& config, advice::Advisor* advisor) {
  std::vector<routing::AutoOffload::Rule> rules;
  for (const config::Route& r : config.routes) {
    if (!r.auto_offload || r.target_kind != config::TargetKind::Upstream) continue;
    rules.push_back({r.name, r.target, r.auto_offload->pool, r.auto_offload->min_confidence});
  }
  size_t before = decisions_.movedEndpoints().size();
  decisions_.configure(std::move(rules), config.advice.min_samples);
  size_t after = decisions_.movedEndpoints().size();
  if (after < before) {
    log_->info("auto-offload: {} endpoint(s) of routes that no longer have auto_offload are "
               "served by their upstream again", before - after);
  }
  advisor_ = advisor;
  if (advisor_ != nullptr && !decisions_.rules().empty()) {
    if (!timer_.active()) timer_.start(kReviewEveryMs, kReviewEveryMs);
    timer_.unref();
  } else {
    timer_.stop();
  }
}

void AutoOffloadDriver::stop() { timer_.stop(); }

void AutoOffloadDriver::onTimer() {
  if (advisor_ == nullptr) return;
  const int64_t now = static_cast<int64_t>(uv_now(loop_));
  const int64_t wall = wallMs();
  std::vector<routing::BlockingVerdict> blocking;
  for (const routing::AutoOffload::Rule& rule : decisions_.rules()) {
    blocking.clear();
    for (const advice::EndpointReport& e : advisor_->blockingEndpoints(rule.upstream)) {
      if (e.endpoint.route != rule.route) continue;
      blocking.push_back({e.endpoint.route, e.endpoint.method, e.endpoint.path, e.evidence.samples,
                          e.verdict.confidence, e.verdict.blocking_ms, e.verdict.loop_share});
    }
    for (const routing::MovedEndpoint& m : decisions_.review(rule, blocking, now, wall)) {
      // Warn: the operator should know that part of the app now runs on the pool's workers
      // (and may want to make it explicit with a pool route of its own).
      log_->warn("auto-offload: route {}: {} {} blocks the app's loop ({:.1f} ms per request, "
                 "{:.1f}% of its process's time, confidence {:.3f}, {} samples): served by "
                 "pool {} from now on",
                 m.route, m.method, m.path, m.verdict.blocking_ms, m.verdict.loop_share * 100,
                 m.verdict.confidence, m.verdict.samples, m.pool);
    }
  }
}

void AutoOffloadDriver::reset() {
  size_t n = decisions_.reset();
  if (n > 0) {
    log_->warn("auto-offload: POST /advice/reset: {} endpoint(s) are served by their upstream "
               "again until the advisor finds them blocking anew", n);
  }
}

void AutoOffloadDriver::writeMetrics(
    metrics::PrometheusWriter& out,
    const std::map<std::string, std::shared_ptr<routing::RouteLimiter>>& limiters) const {
  out.family("loopguard_auto_offloaded_endpoints", "gauge",
             "Endpoints of an auto_offload route that the advisor found blocking the app's "
             "loop and that its pool now serves.");
  for (const routing::AutoOffload::Rule& rule : decisions_.rules()) {
    out.sample("loopguard_auto_offloaded_endpoints", {{"route", rule.route}},
               static_cast<uint64_t>(decisions_.movedCount(rule.route)));
  }
  out.family("loopguard_auto_offload_in_flight", "gauge",
             "Requests of moved endpoints holding a worker slot of the route's pool.");
  for (const auto& [route, l] : limiters) {
    out.sample("loopguard_auto_offload_in_flight", {{"route", route}},
               l->limiter().stats().in_flight);
  }
  out.family("loopguard_auto_offload_queue_depth", "gauge",
             "Requests of moved endpoints waiting for a worker of the route's pool.");
  for (const auto& [route, l] : limiters) {
    out.sample("loopguard_auto_offload_queue_depth", {{"route", route}},
               l->limiter().stats().queue_depth);
  }
}

void AutoOffloadDriver::annotateAdvice(nlohmann::json& report) const {
  auto endpoints = report.find("endpoints");
  if (endpoints == report.end() || !endpoints->is_array()) return;
  for (nlohmann::json& e : *endpoints) {
    const routing::MovedEndpoint* m =
        decisions_.find(e.value("route", ""), e.value("method", ""), e.value("path", ""));
    e["offloaded"] = m != nullptr;
    e["since"] = m != nullptr ? nlohmann::json(formatUtcMillis(m->since_ms)) : nlohmann::json(nullptr);
    e["offload_pool"] = m != nullptr ? nlohmann::json(m->pool) : nlohmann::json(nullptr);
  }
}

}  // namespace loopguard::proxy
