#include "offload/pool_set.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace loopguard::offload {

std::vector<const config::Pool*> usedPools(const config::Config& config) {
  std::vector<const config::Pool*> used;
  for (const config::Pool& pool : config.pools) {
    if (config.routesToPool(pool.name)) used.push_back(&pool);
  }
  return used;
}

namespace {

void logUnused(const config::Config& config, const std::vector<const config::Pool*>& used) {
  for (const config::Pool& pool : config.pools) {
    if (std::find(used.begin(), used.end(), &pool) == used.end()) {
      spdlog::get("offload")->info("pool {}: no route uses it: not started", pool.name);
    }
  }
}

}  // namespace

PoolSet::PoolSet(uv_loop_t* loop) : loop_(loop) {}

PoolSet::~PoolSet() = default;

std::shared_ptr<WorkerPool> PoolSet::make(const config::Pool& pool) {
  return std::make_shared<WorkerPool>(loop_, buffers_, dir_, pool);
}

bool PoolSet::configure(const config::Config& config, std::string& error) {
  std::vector<const config::Pool*> used = usedPools(config);
  logUnused(config, used);
  if (!used.empty() && !dir_.create(error)) return false;
  for (const config::Pool* pool : used) pools_[pool->name] = make(*pool);
  return true;
}

void PoolSet::start() {
  started_ = true;
  for (auto& [name, pool] : pools_) pool->start();
}

void PoolSet::applyConfig(const config::Config& config) {
  if (stopping_) return;
  std::vector<const config::Pool*> used = usedPools(config);
  std::string error;
  if (!used.empty() && !dir_.create(error)) {
    spdlog::get("offload")->error("reload: {}: pools left as they were", error);
    return;
  }
  std::map<std::string, std::shared_ptr<WorkerPool>> next;
  for (const config::Pool* cfg : used) {
    auto it = pools_.find(cfg->name);
    if (it != pools_.end()) {
      it->second->clearWaitingLimiters();  // the new snapshot registers its own
      it->second->reconfigure(*cfg);
      next[cfg->name] = it->second;
    } else {
      auto pool = make(*cfg);
      if (started_) pool->start();
      next[cfg->name] = std::move(pool);
    }
  }
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                [](const auto& p) { return p->stopped(); }),
                 retired_.end());
  for (auto& [name, pool] : pools_) {
    if (next.count(name) == 0) retire(pool);
  }
  pools_ = std::move(next);
}

void PoolSet::retire(std::shared_ptr<WorkerPool> pool) {
  spdlog::get("offload")->info("pool {}: no longer used: stopping its workers", pool->name());
  WorkerPool* raw = pool.get();
  retired_.push_back(std::move(pool));
  // Pruned later, not from this callback: it runs inside the pool's own timer.
  raw->stop([] {});
}

upstream::PoolResolver PoolSet::resolver() {
  return [this](const std::string& name) {
    upstream::PoolBinding binding;
    auto it = pools_.find(name);
    if (it == pools_.end()) return binding;  // validated configs never get here
    std::shared_ptr<WorkerPool> pool = it->second;
    binding.target = pool;
    binding.gate = pool.get();
    binding.capacity = [pool] { return pool->capacity(); };
    binding.add_waiting_limiter = [pool](const std::shared_ptr<routing::RouteLimiter>& limiter) {
      pool->addWaitingLimiter(limiter);
    };
    return binding;
  };
}

void PoolSet::stop(std::function<void()> done) {
  stopping_ = true;
  std::vector<std::shared_ptr<WorkerPool>> all = retired_;
  for (auto& [name, pool] : pools_) all.push_back(pool);
  if (all.empty()) {
    done();
    return;
  }
  auto left = std::make_shared<size_t>(all.size());
  auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
  for (auto& pool : all) {
    pool->stop([left, shared_done] {
      if (--*left == 0 && *shared_done) (*shared_done)();
    });
  }
}

void PoolSet::kill() {
  stopping_ = true;
  for (auto& pool : retired_) pool->kill();
  for (auto& [name, pool] : pools_) pool->kill();
}

std::shared_ptr<WorkerPool> PoolSet::find(const std::string& name) const {
  auto it = pools_.find(name);
  return it == pools_.end() ? nullptr : it->second;
}

std::vector<std::pair<std::string, PoolStats>> PoolSet::stats() const {
  std::vector<std::pair<std::string, PoolStats>> out;
  for (const auto& [name, pool] : pools_) out.emplace_back(name, pool->stats());
  return out;
}

}  // namespace loopguard::offload
