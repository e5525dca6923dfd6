// The loop-block advisor: finds, from live traffic, which endpoints block their app process's
// event loop, for any runtime. The Exchange reports each upstream request through the
// Observer interface (two timestamps per request, O(1)); the Advisor keys it by endpoint
// (route, method, path template) and by the process that served it, feeds that process's
// stream (S1 stall-then-flush, S2 silence-before-completion, S3 probe lag when
// `advice.probe: true`), and once a second turns the evidence into verdicts. Those answer
// GET /advice, feed the metrics, and are what auto-offload and the adaptive limiter ask for
// (verdictFor(), blockingEndpoints(), and blocksLoop() as the adaptive limiter's
// routing::LoopBlockOracle).
//
// One per proxy, on its loop; it outlives every snapshot that points at it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <memory_resource>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "proxy/advice/endpoint_registry.h"
#include "proxy/advice/observer.h"
#include "proxy/advice/probe_connection.h"
#include "proxy/advice/process_locator.h"
#include "proxy/advice/process_stream.h"
#include "proxy/advice/verdict.h"
#include "proxy/metrics/prometheus.h"
#include "proxy/routing/adaptive_limit.h"
#include "common/net/buffer_pool.h"
#include "common/owned_list.h"
#include "common/uv/timer.h"

namespace loopguard::advice {

struct EndpointReport {
  EndpointInfo endpoint;
  Evidence evidence;
  Verdict verdict;
  uint32_t processes = 0;  // how many processes served it
};

struct ProcessReport {
  std::string upstream;
  std::string address;  // the endpoint address its connections go to
  int pid = 0;          // 0: processes behind `address` are not told apart
  uint64_t completions = 0;
  double loop_busy_ratio = 0;  // share of its time the blocking endpoints hold its loop
  uint64_t cpu_stalls = 0;     // stalls not blamed: its loop thread was starved of CPU
};

struct Report {
  bool enabled = true;
  bool probe = false;
  double observed_s = 0;
  uint64_t observed_requests = 0;
  uint64_t unattributed_requests = 0;  // sent before their process was known
  std::vector<EndpointReport> endpoints;  // blocking first, then by loop share, then samples
  std::vector<ProcessReport> processes;
  std::vector<std::string> notes;  // about grouping: addresses whose processes cannot be told apart
};

class Advisor final : public Observer, public routing::LoopBlockOracle, private ProbeOwner {
 public:
  Advisor(uv_loop_t* loop, net::BufferPool& buffers, const config::AdviceConfig& config);
  ~Advisor() override;
  Advisor(const Advisor&) = delete;
  Advisor& operator=(const Advisor&) = delete;

  void configure(const config::AdviceConfig& config);
  // Stops probing and timers (graceful drain, shutdown); observations may still arrive.
  void stop();
  // Forgets everything learned (POST /advice/reset); the processes behind connections stay known.
  void reset();

  Report report();
  void writeMetrics(metrics::PrometheusWriter& out) const;

  // For auto-offload (at request-head time) and the adaptive limiter: the latest verdict of
  // the endpoint a request belongs to, refreshed every second; null if not seen yet.
  const Verdict* verdictFor(std::string_view route, std::string_view method,
                            std::string_view target);
  // Endpoints of `upstream` whose latest verdict is blocks_loop.
  std::vector<EndpointReport> blockingEndpoints(std::string_view upstream) const;
  // routing::LoopBlockOracle, for `max_in_flight: auto`: whether an endpoint of `route` whose
  // requests go to upstream `target` has the verdict blocks_loop now (false while advice is
  // disabled: its verdicts are not kept up to date then).
  bool blocksLoop(std::string_view target, std::string_view route) const override;

  // Observer
  Ticket onRequestSent(const SentRequest& request) override;
  void onResponseHead(Ticket ticket, const ResponseHead& head) override;
  void onRequestAbandoned(Ticket ticket) override;

 private:
  struct Group;
  struct ConnectionState {
    int32_t group = -1;
    uint32_t generation = 0;
    int64_t last_used_ns = 0;
    int64_t retry_after_ns = 0;  // the locator was full: not before then
    bool looking = false;
    bool untracked = false;  // its process cannot be found; its requests are not observed
  };
  struct AddressState;
  struct InFlight;
  struct EndpointState;
  struct PendingLookup;

  int64_t now() const;
  // The group a connection's requests go to; -1 while unknown (a lookup may be under way).
  int32_t groupOf(const SentRequest& request, int64_t now_ns);
  void retryLookup(PendingLookup pending);
  void lookupLater(const void* connection, uint32_t generation);
  void startLookup(const void* connection, uint32_t generation, const SocketPeer& peer,
                   const std::string& upstream, int attempt);
  void onLocated(const void* connection, uint32_t generation, const SocketPeer& peer,
                 const std::string& upstream, int attempt, const LocateResult& result);
  int32_t groupFor(const std::string& upstream, const SocketPeer& peer, const ProcessId& process);
  void onRetryTimer();
  void release(Ticket ticket, bool completed, bool streamed);

  void onCpuTimer();
  void onRefreshTimer();
  void refresh(int64_t now_ns);
  bool probeWanted(EndpointId endpoint) const;

  // Probing (S3).
  void onProbeTimer();
  // Within `within_ms` (0: 10-20 ms, unless already armed).
  void armProbeTimer(uint64_t within_ms = 0);
  void openProbe(Group& group);
  void onProbeConnected(ProbeConnection& probe) override;
  void onProbeHead(ProbeConnection& probe) override;
  void onProbeGone(ProbeConnection& probe) override;
  void onProbeClosed(ProbeConnection& probe) override;
  void closeProbes();
  // The probe `connection` points to if it is still open: `connection` may be one closed since
  // (its address compared, never dereferenced).
  ProbeConnection* openProbeAt(const void* connection);

  uv_loop_t* loop_;
  net::BufferPool& buffers_;
  config::AdviceConfig config_;
  StreamParams stream_params_;
  VerdictParams verdict_params_;
  bool stopped_ = false;

  EndpointRegistry endpoints_;
  std::vector<EndpointState> endpoint_state_;  // by EndpointId
  std::vector<std::unique_ptr<Group>> groups_;
  std::unordered_map<std::string, int32_t> group_index_;  // by process or address key
  // The connections seen, a node each, from a pool of their own: a burst of new upstream
  // connections leaves its nodes packed in a few blocks, not each among the burst's freed
  // allocations, where every one would keep a heap page the burst used resident.
  std::pmr::unsynchronized_pool_resource connection_nodes_;
  std::pmr::unordered_map<const void*, ConnectionState> connections_{&connection_nodes_};
  std::unordered_map<std::string, AddressState> addresses_;  // by upstream '|' address
  std::vector<InFlight> in_flight_;
  std::vector<uint32_t> free_tickets_;
  std::vector<PendingLookup> retries_;
  OwnedList<ProbeConnection> probes_;  // open, or closing until their close callback
  ProcessLocator locator_;
  uv::Timer refresh_timer_;
  uv::Timer retry_timer_;
  uv::Timer probe_timer_;
  int64_t probe_due_ns_ = 0;
  uv::Timer cpu_timer_;
  std::minstd_rand jitter_{12345};
  std::string probe_request_;

  // (upstream, route) pairs with a blocks_loop endpoint, from the last refresh (blocksLoop()).
  std::vector<std::pair<std::string, std::string>> blocking_routes_;
  uint32_t epoch_ = 1;
  uint32_t generation_ = 0;
  int64_t observe_start_ns_ = 0;
  uint64_t observed_ = 0;
  uint64_t unattributed_ = 0;
  FILE* trace_ = nullptr;  // LOOPGUARD_ADVICE_TRACE: a diagnostic, off unless set
};

}  // namespace loopguard::advice
