// What `loopguard proxy` and `loopguard offload` share: a ProxyApp with a PoolSet plugged in
// (the resolver for `pool:` routes, readiness, metrics, and the pools' part of reload, drain
// and forced stop), run on one loop until it has drained.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/loader.h"
#include "main/commands.h"
#include "main/proxy_app.h"
#include "offload/pool_set.h"

namespace loopguard {

// Loads a config file and prints every error it has on stderr.
config::LoadResult loadOrReport(const std::string& path, config::Purpose p);
// Logs what config/lint.h found (once logging is set up).
void logConfigWarnings(const std::vector<config::ConfigError>& warnings);

// `pools` must outlive the app.
AppHooks poolHooks(offload::PoolSet& pools);

// Runs the app for `cfg` (its listen address must be set) with the pools it uses; returns the
// exit code. `source` is the file text `cfg` came from (changes are detected against it).
// `customize` may adjust the hooks (the sidecar's reload).
int serveApp(const CommonOptions& options, std::shared_ptr<const config::Config> cfg,
             const std::string& source, const std::function<void(AppHooks&)>& customize);

}  // namespace loopguard
