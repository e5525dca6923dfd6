// `loopguard proxy`: load the config, run a ProxyApp on one loop until it has drained.
#include <spdlog/spdlog.h>

#include <iostream>

#include "config/loader.h"
#include "main/commands.h"
#include "main/proxy_app.h"
#include "main/serve.h"

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
  return serveApp(options, cfg, nullptr);
}

}  // namespace loopguard
