// `loopguard proxy`: load the config, run a ProxyApp on one loop until it has drained.
#include <spdlog/spdlog.h>

#include <iostream>

#include "config/loader.h"
#include "main/commands.h"
#include "main/proxy_app.h"
#include "main/serve.h"

namespace loopguard {

config::LoadResult loadOrReport(const std::string& path, config::Purpose p) {
  config::LoadResult result = config::loadConfigFile(path, p);
  for (const config::ConfigError& e : result.errors) std::cerr << e.format() << "\n";
  return result;
}

void logConfigWarnings(const std::vector<config::ConfigError>& warnings) {
  for (const config::ConfigError& w : warnings) spdlog::get("config")->warn("{}", w.format());
}

int runProxy(const CommonOptions& options) {
  config::LoadResult file = loadOrReport(options.config_path, config::Purpose::Proxy);
  if (!file.ok()) return 1;
  if (!setupLoggingFor(options, *file.config)) return 2;
  logConfigWarnings(file.warnings);
  return serveApp(options, file.config, file.source, nullptr);
}

}  // namespace loopguard
