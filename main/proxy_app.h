// `loopguard proxy` as one object: the proxy server, its admin listener, the config watcher
// and the process lifecycle (signals, drain), all on one loop. Reload comes from three places
// (SIGHUP, POST /reload, a change of the file) and goes through one function.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/loader.h"
#include "main/commands.h"
#include "main/config_watcher.h"
#include "main/lifecycle.h"
#include "proxy/admin/admin_server.h"
#include "proxy/admin/status.h"
#include "proxy/metrics/loop_lag.h"
#include "proxy/proxy_server.h"

namespace loopguard {

struct ReloadResult {
  bool ok = false;
  bool changed = false;
  std::vector<std::string> errors;            // FILE:LINE:COL: message
  std::vector<std::string> restart_required;  // keys whose change waits for a restart
  std::vector<std::string> warnings;          // FILE:LINE:COL: warning: ... (config/lint.h)
};

// Extra pieces a subcommand plugs into the app (the offload pools).
struct AppHooks {
  upstream::PoolResolver pools;                          // `pool:` routes
  std::function<bool(std::string&)> pools_ready;         // /readyz: false + reason if not
  std::function<void(metrics::PrometheusWriter&)> pool_metrics;
  std::function<nlohmann::json(uint64_t now_ms)> pools_status;  // the "pools" section of /status
  std::function<void(const config::Config&)> on_config;  // start/roll pools for a config
  std::function<void(std::function<void()>)> stop_pools; // drain: stop workers, then done()
  std::function<void()> kill_pools;                      // second signal: stop at once
  // `loopguard offload`: reloads read the file as an offload config and serve its sidecar view.
  config::Purpose purpose = config::Purpose::Proxy;
  std::function<std::shared_ptr<const config::Config>(const config::Config&)> served_config;
};

class ProxyApp {
 public:
  ProxyApp(uv_loop_t* loop, CommonOptions options, std::shared_ptr<const config::Config> config,
           AppHooks hooks);
  ~ProxyApp();

  // Listens (proxy + admin); false if it could not.
  // `source` is the config file's text as loaded, the baseline for the file watcher.
  bool start(const config::Address& listen, const std::string& source);
  ReloadResult reload(const char* trigger);
  int exitCode() const { return lifecycle_.exitCode(); }

 private:
  void applyAccessLog(const config::Config& cfg);
  admin::AdminResponse handleAdmin(const admin::AdminRequest& request);
  std::string renderMetrics();
  void addStatusSections();
  nlohmann::json processStatus() const;
  void beginDrain(std::function<void()> done);
  void finishDrain();
  void forceStop();
  void stopHousekeeping();

  uv_loop_t* loop_;
  CommonOptions options_;
  std::shared_ptr<const config::Config> config_;
  AppHooks hooks_;
  proxy::ProxyServer server_;
  std::unique_ptr<admin::AdminServer> admin_;
  admin::StatusBoard status_;  // GET / and GET /status
  ConfigWatcher watcher_;
  Lifecycle lifecycle_;
  metrics::LoopLagMonitor lag_;
  uv::Timer access_flush_;  // the access log is buffered; this bounds how late a line appears
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
  std::function<void()> drain_done_;
};

// Applies the config's log settings (overridden by --log-level / --log-format).
bool setupLoggingFor(const CommonOptions& options, const config::Config& cfg);

}  // namespace loopguard
