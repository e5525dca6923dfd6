#include "offload/pool_report.h"

#include <map>
#include <string>

#include "proxy/metrics/process_stats.h"

namespace loopguard::offload {

namespace {

using nlohmann::json;

// The state names of loopguard_pool_workers{state}, plus "exited" (gone, not yet swept).
const char* stateName(const Worker& w) {
  switch (w.state()) {
    case Worker::State::Starting: return "starting";
    case Worker::State::Ready:
      if (!w.dispatchable()) return "stopping";  // found dead or suspect: takes no requests
      return w.in_flight > 0 ? "busy" : "ready";
    case Worker::State::Stopping: return "stopping";
    case Worker::State::Exited: return "exited";
  }
  return "exited";
}

// Which of a slot's processes stands for it: the ready one, else the one starting, else the
// one stopping.
int rank(const Worker& w) {
  switch (w.state()) {
    case Worker::State::Ready: return w.dispatchable() ? 3 : 1;
    case Worker::State::Starting: return 2;
    case Worker::State::Stopping: return 1;
    case Worker::State::Exited: return 0;
  }
  return 0;
}

json reasons(const std::array<uint64_t, kRestartReasonCount>& counts) {
  json j = json::object();
  for (size_t i = 0; i < kRestartReasonCount; ++i) {
    if (counts[i] > 0) j[restartReasonName(static_cast<RestartReason>(i))] = counts[i];
  }
  return j;
}

uint64_t sum(const std::array<uint64_t, kRestartReasonCount>& counts) {
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  return n;
}

}  // namespace

json poolsStatus(const PoolSet& pools, uint64_t now_ms) {
  json out = json::array();
  for (const auto& [name, st] : pools.stats()) {
    std::shared_ptr<WorkerPool> pool = pools.find(name);
    if (!pool) continue;
    const Supervisor& sup = pool->supervisor();
    json p;
    p["name"] = name;
    p["workers_configured"] = sup.config().workers;
    p["concurrency_per_worker"] = sup.config().concurrency_per_worker;
    p["capacity"] = pool->capacity();
    p["available"] = sup.available();
    p["states"] = {{"starting", st.starting},
                   {"ready", st.ready},
                   {"busy", st.busy},
                   {"stopping", st.stopping}};
    p["restarts"] = reasons(st.restarts);
    std::map<uint32_t, SlotReport> slots;
    for (SlotReport& s : sup.slotReports()) slots[s.index] = std::move(s);
    json workers = json::array();
    for (const auto& w : sup.workers()) {
      json j;
      j["index"] = w->index();
      j["pid"] = w->pid();
      j["state"] = stateName(*w);
      j["in_flight"] = w->in_flight;
      j["served"] = w->served;
      j["uptime_s"] = now_ms >= w->startedAt()
                          ? static_cast<double>(now_ms - w->startedAt()) / 1000.0
                          : 0.0;
      if (w->stopReason() != nullptr) j["stop_reason"] = w->stopReason();
      std::optional<metrics::ProcessStats> proc =
          w->processGone() ? std::nullopt : metrics::readProcessStats(w->pid());
      j["rss_bytes"] = proc ? json(proc->resident_bytes) : json(nullptr);
      j["cpu_seconds"] = proc ? json(proc->cpu_seconds) : json(nullptr);
      auto slot = slots.find(w->index());
      if (slot != slots.end()) {
        j["restarts"] = reasons(slot->second.restarts);
        j["restarts_total"] = sum(slot->second.restarts);
        if (!slot->second.last_restart.empty()) {
          j["last_restart"] = slot->second.last_restart;
          j["last_restart_ago_s"] =
              static_cast<double>(now_ms - std::min(now_ms, slot->second.last_restart_at)) /
              1000.0;
        }
      }
      workers.push_back(std::move(j));
    }
    // Slots with no process now (waiting out a restart backoff) still show their history.
    for (const auto& [index, s] : slots) {
      bool has_process = false;
      for (const auto& w : sup.workers()) has_process |= w->index() == index;
      if (has_process) continue;
      json j = {{"index", index},          {"pid", nullptr},
                {"state", "restarting"},   {"in_flight", 0},
                {"served", 0},             {"rss_bytes", nullptr},
                {"cpu_seconds", nullptr},  {"restarts", reasons(s.restarts)},
                {"restarts_total", sum(s.restarts)}};
      if (!s.last_restart.empty()) {
        j["last_restart"] = s.last_restart;
        j["last_restart_ago_s"] =
            static_cast<double>(now_ms - std::min(now_ms, s.last_restart_at)) / 1000.0;
      }
      workers.push_back(std::move(j));
    }
    p["workers"] = std::move(workers);
    out.push_back(std::move(p));
  }
  return out;
}

void writeWorkerMetrics(const PoolSet& pools, metrics::PrometheusWriter& out) {
  struct Sample {
    std::string pool;
    std::string index;
    metrics::ProcessStats stats;
  };
  std::vector<Sample> samples;
  for (const auto& [name, st] : pools.stats()) {
    std::shared_ptr<WorkerPool> pool = pools.find(name);
    if (!pool) continue;
    std::map<uint32_t, const Worker*> serving;
    for (const auto& w : pool->supervisor().workers()) {
      if (w->index() >= pool->supervisor().config().workers || rank(*w) == 0) continue;
      const Worker*& best = serving[w->index()];
      if (best == nullptr || rank(*w) > rank(*best)) best = w.get();
    }
    for (const auto& [index, w] : serving) {
      if (w->processGone()) continue;
      if (std::optional<metrics::ProcessStats> proc = metrics::readProcessStats(w->pid())) {
        samples.push_back({name, std::to_string(index), *proc});
      }
    }
  }
  out.family("loopguard_pool_worker_cpu_seconds_total", "counter",
             "CPU time (user + system) of the process serving each worker slot; resets when "
             "the worker is replaced.");
  for (const Sample& s : samples) {
    out.sample("loopguard_pool_worker_cpu_seconds_total",
               {{"pool", s.pool}, {"index", s.index}}, s.stats.cpu_seconds);
  }
  out.family("loopguard_pool_worker_resident_memory_bytes", "gauge",
             "Resident memory of the process serving each worker slot.");
  for (const Sample& s : samples) {
    out.sample("loopguard_pool_worker_resident_memory_bytes",
               {{"pool", s.pool}, {"index", s.index}}, s.stats.resident_bytes);
  }
}

}  // namespace loopguard::offload
