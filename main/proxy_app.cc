#include "main/proxy_app.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "config/loader.h"
#include "config/to_json.h"
#include "proxy/advice/admin_routes.h"

namespace loopguard {

bool setupLoggingFor(const CommonOptions& options, const config::Config& cfg) {
  std::string level = options.log_level.value_or(cfg.log.level);
  std::string format = options.log_format.value_or(
      cfg.log.format == config::LogFormat::Json ? "json" : "text");
  return setupLogging(level, format == "json" ? LogFormatKind::Json : LogFormatKind::Text);
}

ProxyApp::ProxyApp(uv_loop_t* loop, CommonOptions options,
                   std::shared_ptr<const config::Config> config, AppHooks hooks)
    : loop_(loop),
      options_(std::move(options)),
      config_(config),
      hooks_(std::move(hooks)),
      server_(loop, config, hooks_.pools),
      watcher_(loop, options_.config_path, [this] { reload("file change"); }),
      lifecycle_(loop, config->timeouts.drain),
      lag_(loop),
      access_flush_(loop, nullptr, [](void*) { flushAccessLog(); }) {
  lifecycle_.onDrain = [this](std::function<void()> done) { beginDrain(std::move(done)); };
  lifecycle_.onForceStop = [this] { forceStop(); };
  lifecycle_.onReload = [this] { reload("SIGHUP"); };
}

ProxyApp::~ProxyApp() = default;

bool ProxyApp::start(const config::Address& listen, const std::string& source) {
  auto log = spdlog::get("main");
  // Signal handlers first: whoever saw "listening on" may send SIGTERM/SIGHUP right away, and
  // the default action of both is to kill the process.
  lifecycle_.start();
  // The watcher too, against the text that was loaded: an edit made at any time after the
  // load (even before "listening on") is then seen, never silently taken as the baseline.
  if (!watcher_.start(source)) {
    log->warn("cannot watch {} for changes; reload with SIGHUP or POST /reload",
              options_.config_path);
  }
  std::string error;
  if (!server_.start(listen, error)) {
    log->error("cannot listen on {}: {}", listen.toString(), error);
    return false;
  }
  if (config_->admin.listen) {
    admin_ = std::make_unique<admin::AdminServer>(
        loop_, [this](const admin::AdminRequest& r) { return handleAdmin(r); });
    if (!admin_->start(*config_->admin.listen, error)) {
      log->error("cannot listen on {} (admin): {}", config_->admin.listen->toString(), error);
      server_.closeAll();
      return false;
    }
    log->info("admin listening on {}", admin_->boundAddress());
  }
  // Last, so that a supervisor that waits for this line finds everything else up.
  log->info("listening on {}", server_.boundAddress());
  lag_.start();
  access_flush_.start(200, 200);
  access_flush_.unref();
  return true;
}

ReloadResult ProxyApp::reload(const char* trigger) {
  auto log = spdlog::get("main");
  ReloadResult result;
  config::LoadResult loaded = config::loadConfigFile(options_.config_path, hooks_.purpose);
  // Whatever the outcome, the watcher now knows these bytes: it won't retry a rejected file
  // until it changes again.
  watcher_.setCurrent(loaded.source);
  if (!loaded.ok()) {
    ++reloads_failed_;
    for (const auto& e : loaded.errors) {
      result.errors.push_back(e.format());
      log->error("reload ({}) rejected: {}", trigger, e.format());
    }
    log->error("reload ({}) rejected: {} error(s); the running config is unchanged", trigger,
               loaded.errors.size());
    return result;
  }
  if (hooks_.served_config) loaded.config = hooks_.served_config(*loaded.config);
  const config::Config& next = *loaded.config;
  if (next.listen != config_->listen) result.restart_required.push_back("listen");
  if (next.admin.listen != config_->admin.listen) result.restart_required.push_back("admin.listen");
  if (next.timeouts.drain != config_->timeouts.drain) {
    result.restart_required.push_back("timeouts.drain");
  }
  result.ok = true;
  if (config::configToJson(next) == config::configToJson(*config_)) {
    log->info("reload ({}): no change", trigger);
    ++reloads_ok_;
    return result;
  }
  result.changed = true;
  if (next.log != config_->log) setupLoggingFor(options_, next);
  if (hooks_.on_config) hooks_.on_config(next);
  server_.applyConfig(loaded.config);
  config_ = loaded.config;
  ++reloads_ok_;
  log->info("reload ({}): applied{}", trigger,
            result.restart_required.empty() ? "" : "; a restart is needed for some changes");
  for (const auto& key : result.restart_required) {
    log->warn("reload ({}): `{}` changed; it takes effect after a restart", trigger, key);
  }
  return result;
}

admin::AdminResponse ProxyApp::handleAdmin(const admin::AdminRequest& r) {
  auto json_response = [](int status, const nlohmann::json& j) {
    return admin::AdminResponse{status, "application/json", j.dump(2) + "\n"};
  };
  auto only = [&](const char* method) { return r.method == method; };
  if (r.path == "/healthz") {
    if (!only("GET") && !only("HEAD")) return {405, "text/plain", "method not allowed\n"};
    return {200, "text/plain; charset=utf-8", "ok\n"};
  }
  if (r.path == "/readyz") {
    if (!only("GET") && !only("HEAD")) return {405, "text/plain", "method not allowed\n"};
    if (server_.draining()) return {503, "text/plain; charset=utf-8", "draining\n"};
    std::string why;
    if (hooks_.pools_ready && !hooks_.pools_ready(why)) {
      return {503, "text/plain; charset=utf-8", "not ready: " + why + "\n"};
    }
    return {200, "text/plain; charset=utf-8", "ready\n"};
  }
  if (r.path == "/metrics") {
    if (!only("GET")) return {405, "text/plain", "method not allowed\n"};
    return {200, "text/plain; version=0.0.4; charset=utf-8", renderMetrics()};
  }
  if (r.path == "/config") {
    if (!only("GET")) return {405, "text/plain", "method not allowed\n"};
    return json_response(200, config::configToJson(*config_));
  }
  if (r.path == "/reload") {
    if (!only("POST")) return {405, "text/plain", "method not allowed: use POST\n"};
    ReloadResult result = reload("POST /reload");
    nlohmann::json j;
    j["ok"] = result.ok;
    j["changed"] = result.changed;
    j["errors"] = result.errors;
    j["restart_required"] = result.restart_required;
    return json_response(result.ok ? 200 : 400, j);
  }
  if (advice::isAdvicePath(r.path)) {
    return advice::handleAdviceRequest(r, server_.advisor(), *config_);
  }
  return {404, "text/plain; charset=utf-8",
          "not found; try /healthz /readyz /metrics /config /advice POST /reload\n"};
}

std::string ProxyApp::renderMetrics() {
  std::string out;
  out.reserve(16 * 1024);
  metrics::PrometheusWriter w(out);
  server_.writeMetrics(w);
  if (server_.advisor() != nullptr) server_.advisor()->writeMetrics(w);
  if (hooks_.pool_metrics) hooks_.pool_metrics(w);
  w.family("loopguard_event_loop_lag_seconds", "gauge",
           "How late the proxy's own event loop ran a 250 ms timer, last measured.");
  w.sample("loopguard_event_loop_lag_seconds", {}, lag_.lagSeconds());
  w.family("loopguard_config_reloads_total", "counter", "Config reloads, by result.");
  w.sample("loopguard_config_reloads_total", {{"result", "ok"}}, reloads_ok_);
  w.sample("loopguard_config_reloads_total", {{"result", "failed"}}, reloads_failed_);
  return out;
}

void ProxyApp::beginDrain(std::function<void()> done) {
  drain_done_ = std::move(done);
  server_.drain([this] { finishDrain(); });
}

void ProxyApp::finishDrain() {
  auto stopped = [this] {
    stopHousekeeping();
    if (drain_done_) {
      auto done = std::move(drain_done_);
      drain_done_ = nullptr;
      done();
    }
  };
  if (hooks_.stop_pools) {
    hooks_.stop_pools(stopped);
  } else {
    stopped();
  }
}

void ProxyApp::forceStop() {
  server_.closeAll();
  if (hooks_.kill_pools) hooks_.kill_pools();
  stopHousekeeping();
}

void ProxyApp::stopHousekeeping() {
  watcher_.stop();
  lag_.stop();
  access_flush_.stop();
  flushAccessLog();
  if (admin_) admin_->close();
}

}  // namespace loopguard
