#include "main/serve.h"

#include "common/logging.h"
#include "common/uv/loop.h"
#include "offload/pool_report.h"

#include <spdlog/spdlog.h>

#include <string>

namespace loopguard {

namespace {

void writePoolMetrics(const offload::PoolSet& pools, metrics::PrometheusWriter& w) {
  auto stats = pools.stats();
  w.family("loopguard_pool_workers", "gauge",
           "Worker processes by state (busy: ready with a request on it).");
  for (const auto& [name, st] : stats) {
    w.sample("loopguard_pool_workers", {{"pool", name}, {"state", "starting"}},
             static_cast<uint64_t>(st.starting));
    w.sample("loopguard_pool_workers", {{"pool", name}, {"state", "ready"}},
             static_cast<uint64_t>(st.ready));
    w.sample("loopguard_pool_workers", {{"pool", name}, {"state", "busy"}},
             static_cast<uint64_t>(st.busy));
    w.sample("loopguard_pool_workers", {{"pool", name}, {"state", "stopping"}},
             static_cast<uint64_t>(st.stopping));
  }
  w.family("loopguard_pool_worker_restarts_total", "counter",
           "Worker processes replaced, by reason.");
  for (const auto& [name, st] : stats) {
    for (size_t i = 0; i < offload::kRestartReasonCount; ++i) {
      auto reason = static_cast<offload::RestartReason>(i);
      w.sample("loopguard_pool_worker_restarts_total",
               {{"pool", name}, {"reason", offload::restartReasonName(reason)}},
               st.restarts[i]);
    }
  }
}

}  // namespace

AppHooks poolHooks(offload::PoolSet& pools) {
  AppHooks hooks;
  hooks.pools = pools.resolver();
  hooks.pools_ready = [&pools](std::string& why) {
    for (const auto& [name, st] : pools.stats()) {
      if (st.ready + st.busy == 0) {
        why = "pool " + name + " has no ready worker";
        return false;
      }
    }
    return true;
  };
  hooks.pool_metrics = [&pools](metrics::PrometheusWriter& w) {
    writePoolMetrics(pools, w);
    offload::writeWorkerMetrics(pools, w);
  };
  hooks.pools_status = [&pools](uint64_t now_ms) { return offload::poolsStatus(pools, now_ms); };
  hooks.on_config = [&pools](const config::Config& c) { pools.applyConfig(c); };
  hooks.stop_pools = [&pools](std::function<void()> done) { pools.stop(std::move(done)); };
  hooks.kill_pools = [&pools] { pools.kill(); };
  return hooks;
}

int serveApp(const CommonOptions& options, std::shared_ptr<const config::Config> cfg,
             const std::string& source, const std::function<void(AppHooks&)>& customize) {
  uv::Loop loop;
  int exit_code = 0;
  {
    // Declared before the app so it outlives it: worker connections call back into their
    // pool until they are closed.
    offload::PoolSet pools(loop.get());
    std::string error;
    if (!pools.configure(*cfg, error)) {
      spdlog::get("main")->error("{}", error);
      exit_code = 1;
    } else {
      AppHooks hooks = poolHooks(pools);
      if (customize) customize(hooks);
      ProxyApp app(loop.get(), options, cfg, std::move(hooks));
      if (!app.start(*cfg->listen, source)) {
        exit_code = 1;
        uv_run(loop.get(), UV_RUN_NOWAIT);
      } else {
        pools.start();  // only once listening: a failed start-up leaves no process behind
        uv_run(loop.get(), UV_RUN_DEFAULT);  // returns once every worker process has been reaped
        exit_code = app.exitCode();
      }
    }
  }
  // The app's handles were closed by their owners as it went; let the close callbacks run.
  if (loop.close() != 0) spdlog::get("main")->warn("event loop closed with handles open");
  flushAccessLog();
  spdlog::get("main")->info("stopped");
  return exit_code;
}

}  // namespace loopguard
