// Every worker pool one loopguard process runs, built from the config and kept in step with
// reloads, plus what they share: the directory of worker sockets and a buffer pool. main/
// wires it into the ProxyServer through resolver() (the proxy sees only upstream::Target).
//
// Which pools run: those that some route sends requests to (a pool that only a sidecar file
// declares for `loopguard offload`, or that nothing uses, starts no processes).
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "offload/runtime_dir.h"
#include "offload/worker_pool.h"
#include "common/net/buffer_pool.h"
#include "proxy/upstream/target.h"

namespace loopguard::offload {

class PoolSet {
 public:
  explicit PoolSet(uv_loop_t* loop);
  // Every pool must be stopped (stop() finished) or never started.
  ~PoolSet();
  PoolSet(const PoolSet&) = delete;
  PoolSet& operator=(const PoolSet&) = delete;

  // Creates the pools `config` uses (not started). False with `error` when the socket
  // directory cannot be made.
  bool configure(const config::Config& config, std::string& error);
  // Spawns their workers. Call once the listener is bound, so a start-up failure never leaves
  // processes to clean up.
  void start();
  // A reload. Must run before ProxyServer::applyConfig, which re-registers the limiters of the
  // new snapshot through the resolver. Changed pools roll their workers (replacement first);
  // pools no longer used stop gracefully.
  void applyConfig(const config::Config& config);
  upstream::PoolResolver resolver();

  // Graceful: see WorkerPool::stop. `done` once every child of every pool has exited.
  void stop(std::function<void()> done);
  // SIGKILL to every child now; the loop keeps running until they are reaped.
  void kill();

  // For /metrics and /readyz.
  std::shared_ptr<WorkerPool> find(const std::string& name) const;  // null if not running
  std::vector<std::pair<std::string, PoolStats>> stats() const;

 private:
  std::shared_ptr<WorkerPool> make(const config::Pool& pool);
  void retire(std::shared_ptr<WorkerPool> pool);

  uv_loop_t* loop_;
  net::BufferPool buffers_{64};
  RuntimeDir dir_;
  std::map<std::string, std::shared_ptr<WorkerPool>> pools_;
  std::vector<std::shared_ptr<WorkerPool>> retired_;  // stopping after a reload
  bool started_ = false;
  bool stopping_ = false;
};

// The pools that the routes of `config` send requests to, in config order.
std::vector<const config::Pool*> usedPools(const config::Config& config);

}  // namespace loopguard::offload
