// `loopguard proxy`: load the config, run a ProxyApp on one loop until it has drained.
#include <spdlog/spdlog.h>

#include <iostream>

#include "config/loader.h"
#include "main/commands.h"
#include "main/proxy_app.h"

namespace loopguard {

std::shared_ptr<const config::Config> loadOrReport(const std::string& path, config::Purpose p) {
  config::LoadResult result = config::loadConfigFile(path, p);
  if (!result.ok()) {
    for (const config::ConfigError& e : result.errors) std::cerr << e.format() << "\n";
    return nullptr;
  }
  return result.config;
}

int runProxy(const CommonOptions& options) {
  auto cfg = loadOrReport(options.config_path, config::Purpose::Proxy);
  if (!cfg) return 1;
  if (!setupLoggingFor(options, *cfg)) return 2;

  uv_loop_t loop;
  uv_loop_init(&loop);
  int exit_code = 0;
  {
    // Offload pools plug in through AppHooks (see offload/).
    AppHooks hooks;
    ProxyApp app(&loop, options, cfg, std::move(hooks));
    if (!app.start(*cfg->listen)) {
      exit_code = 1;
      uv_run(&loop, UV_RUN_NOWAIT);
    } else {
      uv_run(&loop, UV_RUN_DEFAULT);
      exit_code = app.exitCode();
    }
  }
  // The app's handles were closed by their owners as it went; let the close callbacks run.
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0) spdlog::get("main")->warn("event loop closed with handles open");
  spdlog::get("main")->info("stopped");
  return exit_code;
}

int runOffload(const CommonOptions& options) {
  auto cfg = loadOrReport(options.config_path, config::Purpose::Offload);
  if (!cfg) return 1;
  std::cerr << "loopguard offload: not implemented yet\n";
  return 1;
}

}  // namespace loopguard
