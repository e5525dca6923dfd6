// `loopguard proxy`: load the config, start the proxy on one loop, drain on SIGTERM/SIGINT,
// reload on SIGHUP.
#include <spdlog/spdlog.h>

#include <iostream>

#include "common/logging.h"
#include "config/loader.h"
#include "main/commands.h"
#include "main/lifecycle.h"
#include "proxy/proxy_server.h"

namespace loopguard {

namespace {

std::shared_ptr<const config::Config> loadOrReport(const std::string& path, config::Purpose p) {
  config::LoadResult result = config::loadConfigFile(path, p);
  if (!result.ok()) {
    for (const config::ConfigError& e : result.errors) std::cerr << e.format() << "\n";
    return nullptr;
  }
  return result.config;
}

}  // namespace

bool setupLoggingFor(const CommonOptions& options, const config::Config& cfg) {
  std::string level = options.log_level.value_or(cfg.log.level);
  std::string format = options.log_format.value_or(
      cfg.log.format == config::LogFormat::Json ? "json" : "text");
  if (!setupLogging(level, format == "json" ? LogFormatKind::Json : LogFormatKind::Text)) {
    std::cerr << "loopguard: unknown log level " << level << "\n";
    return false;
  }
  return true;
}

int runProxy(const CommonOptions& options) {
  auto cfg = loadOrReport(options.config_path, config::Purpose::Proxy);
  if (!cfg) return 1;
  if (!setupLoggingFor(options, *cfg)) return 2;
  auto log = spdlog::get("main");

  uv_loop_t loop;
  uv_loop_init(&loop);
  int exit_code = 0;
  {
    proxy::ProxyServer server(&loop, cfg);
    std::string error;
    if (!server.start(*cfg->listen, error)) {
      log->error("cannot listen on {}: {}", cfg->listen->toString(), error);
      exit_code = 1;
    } else {
      log->info("listening on {}", server.boundAddress());
      Lifecycle lifecycle(&loop, cfg->timeouts.drain);
      lifecycle.onDrain = [&](std::function<void()> done) { server.drain(std::move(done)); };
      lifecycle.onForceStop = [&] { server.closeAll(); };
      lifecycle.onReload = [&]() {
        config::LoadResult r = config::loadConfigFile(options.config_path, config::Purpose::Proxy);
        if (!r.ok()) {
          for (const auto& e : r.errors) log->error("reload rejected: {}", e.format());
          return;
        }
        server.applyConfig(r.config);
        log->info("config reloaded from {}", options.config_path);
      };
      lifecycle.start();
      uv_run(&loop, UV_RUN_DEFAULT);
      exit_code = lifecycle.exitCode();
    }
  }
  // The server's handles were closed by their owners as it went; let the close callbacks run.
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0) log->warn("event loop closed with handles still open");
  log->info("stopped");
  return exit_code;
}

int runOffload(const CommonOptions& options) {
  auto cfg = loadOrReport(options.config_path, config::Purpose::Offload);
  if (!cfg) return 1;
  std::cerr << "loopguard offload: not implemented yet\n";
  return 1;
}

}  // namespace loopguard
