#include "main/proxy_app.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "config/loader.h"
#include "config/to_json.h"
#include "proxy/admin/status_proxy.h"
#include "proxy/advice/admin_routes.h"
#include "proxy/metrics/process_stats.h"

namespace loopguard {

namespace {

// log.format, unless --log-format says otherwise: for the log and the access log alike.
bool jsonLogs(const CommonOptions& options, const config::Config& cfg) {
  if (options.log_format) return *options.log_format == "json";
  return cfg.log.format == config::LogFormat::Json;
}

// admin.token_file's content, trimmed; false with `error` when it cannot serve as a token.
bool readAdminToken(const config::Config& cfg, std::string& token, std::string& error) {
  token.clear();
  if (!cfg.admin.token_file) return true;
  const std::string& path = *cfg.admin.token_file;
  std::string text;
  std::string why;
  if (!config::readWholeFile(path, text, why)) {
    error = "admin.token_file: cannot read " + path + ": " + why;
    return false;
  }
  size_t begin = text.find_first_not_of(" \t\r\n");
  size_t end = text.find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) {
    error = "admin.token_file: " + path + " is empty";
    return false;
  }
  text = text.substr(begin, end - begin + 1);
  for (char c : text) {
    if (c <= 0x20 || c >= 0x7f) {
      error = "admin.token_file: " + path +
              " must hold one token of visible ASCII characters (no spaces inside)";
      return false;
    }
  }
  token = std::move(text);
  return true;
}

}  // namespace

bool setupLoggingFor(const CommonOptions& options, const config::Config& cfg) {
  std::string level = options.log_level.value_or(cfg.log.level);
  return setupLogging(level, jsonLogs(options, cfg) ? LogFormatKind::Json : LogFormatKind::Text);
}

void ProxyApp::applyAccessLog(const config::Config& cfg) {
  server_.configureAccessLog(cfg.log.access_log, jsonLogs(options_, cfg)
                                                     ? proxy::AccessLogFormat::Json
                                                     : proxy::AccessLogFormat::Text);
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
  addStatusSections();
  applyAccessLog(*config);
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
    std::string token;
    if (!readAdminToken(*config_, token, error)) {
      log->error("{}", error);
      server_.closeAll();
      return false;
    }
    admin_ = std::make_unique<admin::AdminServer>(
        loop_, [this](const admin::AdminRequest& r) { return handleAdmin(r); });
    admin_->policy().setToken(std::move(token));
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
  for (const auto& w : loaded.warnings) {
    result.warnings.push_back(w.format());
    spdlog::get("config")->warn("reload ({}): {}", trigger, w.format());
  }
  // Read at every reload, changed config or not: rotating the token needs only a reload.
  std::string token;
  std::string token_error;
  if (!readAdminToken(*loaded.config, token, token_error)) {
    ++reloads_failed_;
    result.errors.push_back(options_.config_path + ": " + token_error);
    log->error("reload ({}) rejected: {}; the running config is unchanged", trigger, token_error);
    return result;
  }
  if (admin_) {
    if (admin_->policy().token() != token) log->info("reload ({}): admin token updated", trigger);
    admin_->policy().setToken(std::move(token));
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
  if (next.log != config_->log) {
    setupLoggingFor(options_, next);
    applyAccessLog(next);
  }
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
    return json_response(200, config::configToJsonRedacted(*config_));
  }
  if (auto status = status_.handle(r)) return *status;  // GET / and GET /status
  if (r.path == "/reload") {
    if (!only("POST")) return {405, "text/plain", "method not allowed: use POST\n"};
    ReloadResult result = reload("POST /reload");
    nlohmann::json j;
    j["ok"] = result.ok;
    j["changed"] = result.changed;
    j["errors"] = result.errors;
    j["restart_required"] = result.restart_required;
    j["warnings"] = result.warnings;
    return json_response(result.ok ? 200 : 400, j);
  }
  if (advice::isAdvicePath(r.path)) {
    return advice::handleAdviceRequest(r, server_.advisor(), *config_);
  }
  return {404, "text/plain; charset=utf-8",
          "not found; try / /status /healthz /readyz /metrics /config /advice POST /reload\n"};
}

std::string ProxyApp::renderMetrics() {
  std::string out;
  out.reserve(16 * 1024);
  metrics::PrometheusWriter w(out);
  server_.writeMetrics(w);
  if (server_.advisor() != nullptr) server_.advisor()->writeMetrics(w);
  if (hooks_.pool_metrics) hooks_.pool_metrics(w);
  metrics::writeProcessMetrics(w);
  w.family("loopguard_event_loop_lag_seconds", "gauge",
           "How late the proxy's own event loop ran a 250 ms timer, last measured.");
  w.sample("loopguard_event_loop_lag_seconds", {}, lag_.lagSeconds());
  w.family("loopguard_config_reloads_total", "counter", "Config reloads, by result.");
  w.sample("loopguard_config_reloads_total", {{"result", "ok"}}, reloads_ok_);
  w.sample("loopguard_config_reloads_total", {{"result", "failed"}}, reloads_failed_);
  return out;
}

void ProxyApp::addStatusSections() {
  status_.add("loopguard", [this] { return processStatus(); });
  status_.add("routes", [this] { return admin::routesStatus(server_, uv_now(loop_)); });
  status_.add("upstreams", [this] { return admin::upstreamsStatus(server_); });
  if (hooks_.pools_status) {
    status_.add("pools", [this] { return hooks_.pools_status(uv_now(loop_)); });
  }
  status_.add("advice", [this] { return advice::adviceStatus(server_.advisor()); });
}

nlohmann::json ProxyApp::processStatus() const {
  nlohmann::json j;
  j["version"] = LOOPGUARD_VERSION;
  j["mode"] = hooks_.purpose == config::Purpose::Offload ? "offload" : "proxy";
  j["pid"] = static_cast<int64_t>(::getpid());
  j["listen"] = server_.boundAddress();
  j["draining"] = server_.draining();
  j["time"] = static_cast<double>(uv_hrtime()) / 1e9;  // monotonic, for rates between polls
  j["loop_lag_ms"] = lag_.lagSeconds() * 1000.0;
  j["client_connections"] = server_.context().counters.client_connections;
  j["reloads"] = {{"ok", reloads_ok_}, {"failed", reloads_failed_}};
  if (auto self = metrics::readProcessStats(static_cast<int>(::getpid()))) {
    j["cpu_seconds"] = self->cpu_seconds;
    j["rss_bytes"] = self->resident_bytes;
    j["start_time"] = self->start_time_seconds;
    // From the server's clock: a browser's may be off.
    j["uptime_s"] = std::max(0.0, static_cast<double>(::time(nullptr)) - self->start_time_seconds);
  }
  metrics::FdStats fds = metrics::readOwnFdStats();
  j["open_fds"] = fds.open;
  j["max_fds"] = fds.max;
  nlohmann::json unrouted = nlohmann::json::object();
  for (const auto& [code, n] : server_.context().unrouted.requests_by_code) {
    unrouted[std::to_string(code)] = n;
  }
  j["unrouted"] = std::move(unrouted);  // refused before a route was chosen (400, 404...)
  return j;
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
