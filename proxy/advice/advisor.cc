#include "proxy/advice/advisor.h"

#include "proxy/advice/evidence.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace loopguard::advice {

namespace {

constexpr uint64_t kRefreshMs = 1000;
constexpr uint64_t kRetryTickMs = 5;
// The loop threads' CPU usage is sampled this often while their processes are busy (one small
// procfs read per process per tick, ~1 ms of loop time a second per busy process): a stall is
// judged against the samples around it.
constexpr uint64_t kCpuSampleMs = 5;
constexpr int64_t kCpuSampleIdleNs = 2000 * kNsPerMs;
constexpr int kMaxLookupAttempts = 12;
constexpr size_t kMaxRetries = 256;
// A new connection that finds the process locator full is not looked up before this.
constexpr int64_t kLocatorBusyRetryNs = 1000 * kNsPerMs;
constexpr size_t kMaxGroups = 256;
constexpr size_t kMaxConnections = 4096;
constexpr int64_t kConnectionIdleNs = 120'000 * kNsPerMs;
// S3: probes wanted in an endpoint's tails before it stops being a reason to probe (more while
// unclear).
constexpr uint64_t kProbeRowsWanted = 60;
constexpr uint64_t kProbeRowsWantedUnclear = 300;
constexpr uint64_t kProbeSamplesEnough = 1000;
// A probe every 10-20 ms while a suspect is in flight.
constexpr uint64_t kProbeIntervalMinMs = 10;
constexpr uint64_t kProbeIntervalMaxMs = 20;
// ...and one 2 ms after a suspect starts, when the last was sent 10 ms ago or more.
constexpr uint64_t kProbeSoonMs = 2;

int64_t retryDelayNs(int attempt) {
  return std::min<int64_t>(500, int64_t{5} << std::min(attempt, 7)) * kNsPerMs;
}

std::string addressKey(std::string_view upstream, std::string_view address) {
  std::string key(upstream);
  key.push_back('|');
  key.append(address);
  return key;
}

}  // namespace

struct Advisor::Group {
  std::string key;
  std::string upstream;
  SocketPeer peer;    // where its connections go (what a probe connects to)
  ProcessId process;  // pid 0: every process behind `peer` as one
  std::unique_ptr<ProcessStream> stream_;
  ProcessStream& stream() { return *stream_; }
  const ProcessStream& stream() const { return *stream_; }
  uint32_t in_flight = 0;
  uint32_t suspects_in_flight = 0;
  ProbeConnection* probe = nullptr;
  int64_t probe_sent_ns = 0;
  double busy_ratio = 0;
  std::vector<double> background;                 // by endpoint, from the last refresh
  ProbePool probe_pool;                           // S3's background, from the last refresh

  std::string schedstat_path;  // its main thread's /proc/PID/task/PID/schedstat (pid known)
  bool cpu_readable = true;

  explicit Group(const StreamParams& params) : stream_(std::make_unique<ProcessStream>(params)) {}
};

struct Advisor::AddressState {
  enum class Mode { Unknown, Process, Whole };
  Mode mode = Mode::Unknown;
  std::string why;        // Whole: why processes cannot be told apart
  std::vector<int> pids;  // processes seen behind it, searched first
  uint32_t probes_connecting = 0;
  uint32_t probe_failures = 0;
  int64_t probe_backoff_until_ns = 0;
};

struct Advisor::InFlight {
  int64_t sent_ns = 0;
  EndpointId endpoint = 0;
  int32_t group = -1;
  uint32_t epoch = 0;
  bool suspect = false;
  bool used = false;
};

struct Advisor::EndpointState {
  Evidence evidence;
  Verdict verdict;
  uint32_t processes = 0;
  double blocking_seconds = 0;  // loop time attributed while flagged (the metric)
  double flagged_ms = 0;        // blocking_ms while the verdict is blocks_loop, else 0
  bool probe_wanted = true;
};

struct Advisor::PendingLookup {
  const void* connection = nullptr;  // a request's connection, or a ProbeConnection
  uint32_t generation = 0;           // 0 for probes
  SocketPeer peer;
  std::string upstream;
  int attempt = 0;
  int64_t due_ns = 0;
};

Advisor::Advisor(uv_loop_t* loop, net::BufferPool& buffers, const config::AdviceConfig& config)
    : loop_(loop),
      buffers_(buffers),
      locator_(loop),
      refresh_timer_(loop, this, &uv::bindTimer<Advisor, &Advisor::onRefreshTimer>),
      retry_timer_(loop, this, &uv::bindTimer<Advisor, &Advisor::onRetryTimer>),
      probe_timer_(loop, this, &uv::bindTimer<Advisor, &Advisor::onProbeTimer>),
      cpu_timer_(loop, this, &uv::bindTimer<Advisor, &Advisor::onCpuTimer>) {
  // Diagnostics: every completion as a line, for tests/bench/advisor_replay (docs/advisor.md).
  if (const char* path = std::getenv("LOOPGUARD_ADVICE_TRACE")) trace_ = std::fopen(path, "we");
  configure(config);
  observe_start_ns_ = now();
  refresh_timer_.start(kRefreshMs, kRefreshMs);
  refresh_timer_.unref();
}

Advisor::~Advisor() {
  closeProbes();
  if (trace_ != nullptr) std::fclose(trace_);
}

int64_t Advisor::now() const { return static_cast<int64_t>(uv_hrtime()); }

void Advisor::configure(const config::AdviceConfig& config) {
  const bool probe_was_on = config_.probe;
  config_ = config;
  verdict_params_.min_samples = config.min_samples;
  if (probe_was_on && !config.probe) closeProbes();
}

void Advisor::stop() {
  stopped_ = true;
  refresh_timer_.stop();
  retry_timer_.stop();
  probe_timer_.stop();
  cpu_timer_.stop();
  closeProbes();
}

void Advisor::reset() {
  ++epoch_;  // requests in flight now complete into nothing
  endpoints_.clear();
  endpoint_state_.clear();
  for (auto& g : groups_) {
    g->stream_ = std::make_unique<ProcessStream>(stream_params_);
    g->suspects_in_flight = 0;
    g->busy_ratio = 0;
    g->background.clear();
    g->probe_pool = ProbePool{};
  }
  for (InFlight& f : in_flight_) f.suspect = false;
  blocking_routes_.clear();
  observe_start_ns_ = now();
  observed_ = 0;
  unattributed_ = 0;
}

// ---- observations ------------------------------------------------------------------------------

Ticket Advisor::onRequestSent(const SentRequest& r) {
  const int64_t t = now();
  const int32_t g = groupOf(r, t);
  if (g < 0) {
    ++unattributed_;
    return 0;
  }
  const EndpointId e = endpoints_.intern(r.route, r.method, r.target, r.upstream);
  if (e >= endpoint_state_.size()) endpoint_state_.resize(static_cast<size_t>(e) + 1);
  Group& group = *groups_[static_cast<size_t>(g)];
  ++group.in_flight;
  const bool suspect = config_.probe && !stopped_ && endpoint_state_[e].probe_wanted;
  if (suspect) {
    ++group.suspects_in_flight;
    // A probe soon after the suspect starts lands behind it if it computes; the 10-20 ms ticks
    // would often come after a short one is over.
    if (group.probe != nullptr && group.probe->idle() &&
        t - group.probe_sent_ns >= static_cast<int64_t>(kProbeIntervalMinMs) * kNsPerMs) {
      armProbeTimer(kProbeSoonMs);
    } else {
      armProbeTimer();
    }
  }
  uint32_t slot;
  if (!free_tickets_.empty()) {
    slot = free_tickets_.back();
    free_tickets_.pop_back();
  } else {
    slot = static_cast<uint32_t>(in_flight_.size());
    in_flight_.emplace_back();
  }
  in_flight_[slot] = InFlight{t, e, g, epoch_, suspect, true};
  return slot + 1;
}

void Advisor::onResponseHead(Ticket ticket, const ResponseHead& head) {
  release(ticket, true, head.streamed);
}

void Advisor::onRequestAbandoned(Ticket ticket) { release(ticket, false, false); }

void Advisor::release(Ticket ticket, bool completed, bool streamed) {
  if (ticket == 0 || ticket > in_flight_.size()) return;
  InFlight& f = in_flight_[ticket - 1];
  if (!f.used) return;
  f.used = false;
  free_tickets_.push_back(ticket - 1);
  Group& g = *groups_[static_cast<size_t>(f.group)];
  --g.in_flight;
  if (f.suspect && g.suspects_in_flight > 0) --g.suspects_in_flight;
  if (!completed || f.epoch != epoch_) return;
  const int64_t t = now();
  if (trace_ != nullptr) {
    const EndpointInfo& info = endpoints_.info(f.endpoint);
    std::fprintf(trace_, "%d %lld %lld %d %d %s %s %s\n", f.group, static_cast<long long>(f.sent_ns),
                 static_cast<long long>(t), g.in_flight > 0 ? 1 : 0, streamed ? 1 : 0,
                 info.route.c_str(), info.method.c_str(), info.path.c_str());
  }
  g.stream().add(Completion{f.sent_ns, t, f.endpoint, !streamed, g.in_flight > 0});
  if (!g.schedstat_path.empty() && g.cpu_readable && !cpu_timer_.active() && !stopped_) {
    cpu_timer_.start(kCpuSampleMs, kCpuSampleMs);
    cpu_timer_.unref();
  }
  ++observed_;
  EndpointState& es = endpoint_state_[f.endpoint];
  if (es.flagged_ms > 0) es.blocking_seconds += es.flagged_ms / 1000;
}

// ---- which process ------------------------------------------------------------------------------

int32_t Advisor::groupOf(const SentRequest& r, int64_t t) {
  auto [it, inserted] = connections_.try_emplace(r.connection);
  ConnectionState& cs = it->second;
  if (r.first_on_connection && !inserted) cs = ConnectionState{};  // a new connection, same address
  cs.last_used_ns = t;
  if (cs.group >= 0) return cs.group;
  if (cs.looking || cs.untracked || t < cs.retry_after_ns) return -1;
  if (!locator_.canQueue()) {  // connection churn: this one goes unobserved for a while
    cs.retry_after_ns = t + kLocatorBusyRetryNs;
    return -1;
  }
  uv_os_fd_t fd = -1;
  SocketPeer peer;
  if (r.socket == nullptr || uv_fileno(reinterpret_cast<uv_handle_t*>(r.socket), &fd) != 0 ||
      !describeSocket(fd, peer)) {
    cs.untracked = true;
    return -1;
  }
  const std::string upstream(r.upstream);
  AddressState& as = addresses_[addressKey(upstream, peer.peer_name)];
  if (as.mode == AddressState::Mode::Whole) {
    cs.group = groupFor(upstream, peer, ProcessId{});
    return cs.group;
  }
  cs.looking = true;
  if (++generation_ == 0) ++generation_;  // 0 marks probe lookups
  cs.generation = generation_;
  startLookup(r.connection, cs.generation, peer, upstream, 0);
  return -1;
}

void Advisor::startLookup(const void* connection, uint32_t generation, const SocketPeer& peer,
                          const std::string& upstream, int attempt) {
  const AddressState& as = addresses_[addressKey(upstream, peer.peer_name)];
  bool queued = locator_.locate(
      peer, as.pids, [this, connection, generation, peer, upstream, attempt](const LocateResult& r) {
        onLocated(connection, generation, peer, upstream, attempt, r);
      });
  if (queued) return;
  if (generation == 0) {  // a probe: it waits for the locator (there are at most a few)
    retryLookup(PendingLookup{connection, 0, peer, upstream, attempt, now() + retryDelayNs(attempt)});
    return;
  }
  lookupLater(connection, generation);
}

// A request's connection whose lookup found no room: its requests go unobserved until one
// comes after kLocatorBusyRetryNs.
void Advisor::lookupLater(const void* connection, uint32_t generation) {
  if (auto it = connections_.find(connection);
      it != connections_.end() && it->second.generation == generation) {
    it->second.looking = false;
    it->second.retry_after_ns = now() + kLocatorBusyRetryNs;
  }
}

// Bounded: past kMaxRetries a request's connection is looked up later, so that a burst of new
// connections cannot grow the list.
void Advisor::retryLookup(PendingLookup pending) {
  if (retries_.size() >= kMaxRetries && pending.generation != 0) {
    lookupLater(pending.connection, pending.generation);
    return;
  }
  retries_.push_back(std::move(pending));
  if (!retry_timer_.active()) retry_timer_.start(kRetryTickMs, kRetryTickMs);
  retry_timer_.unref();
}

void Advisor::onRetryTimer() {
  const int64_t t = now();
  std::vector<PendingLookup> due;
  for (size_t i = 0; i < retries_.size();) {
    if (retries_[i].due_ns <= t) {
      due.push_back(std::move(retries_[i]));
      retries_[i] = std::move(retries_.back());
      retries_.pop_back();
    } else {
      ++i;
    }
  }
  for (const PendingLookup& p : due) {
    startLookup(p.connection, p.generation, p.peer, p.upstream, p.attempt);
  }
  if (retries_.empty()) retry_timer_.stop();
}

void Advisor::onLocated(const void* connection, uint32_t generation, const SocketPeer& peer,
                        const std::string& upstream, int attempt, const LocateResult& result) {
  AddressState& as = addresses_[addressKey(upstream, peer.peer_name)];
  if (result.status == LocateStatus::Found) {
    if (std::find(as.pids.begin(), as.pids.end(), result.process.pid) == as.pids.end()) {
      as.pids.insert(as.pids.begin(), result.process.pid);
      if (as.pids.size() > 64) as.pids.pop_back();
    }
    as.mode = AddressState::Mode::Process;
  } else if (result.status == LocateStatus::Unlocatable && as.mode == AddressState::Mode::Unknown) {
    as.mode = AddressState::Mode::Whole;
    as.why = result.why;
    spdlog::get("proxy")->info(
        "advice: cannot tell the processes behind {} (upstream {}) apart: {}; its statistics are "
        "kept for the address as a whole",
        peer.peer_name, upstream, result.why);
  }

  if (generation == 0) {  // a probe connection
    ProbeConnection* probe = openProbeAt(connection);
    if (probe == nullptr) return;  // gone meanwhile
    ProbeConnection& p = *probe;
    if (result.status == LocateStatus::NotYet && attempt < kMaxLookupAttempts) {
      retryLookup(PendingLookup{connection, 0, peer, upstream, attempt + 1,
                                now() + retryDelayNs(attempt)});
      return;
    }
    int32_t g = -1;
    if (result.status == LocateStatus::Found) {
      g = groupFor(upstream, peer, result.process);
    } else if (as.mode == AddressState::Mode::Whole) {
      g = groupFor(upstream, peer, ProcessId{});
    }
    if (g >= 0 && groups_[static_cast<size_t>(g)]->probe == nullptr) {
      groups_[static_cast<size_t>(g)]->probe = &p;
      p.group = g;
      as.probe_failures = 0;
      return;
    }
    // It reached a process that has its probe already (or none we know): try again later,
    // backing off, since which process accepts a new connection is up to the kernel.
    ++as.probe_failures;
    as.probe_backoff_until_ns = now() + std::min<int64_t>(2000, 20 * as.probe_failures) * kNsPerMs;
    p.close();
    return;
  }

  auto it = connections_.find(connection);
  if (it == connections_.end() || it->second.generation != generation) return;
  ConnectionState& cs = it->second;
  switch (result.status) {
    case LocateStatus::Found:
      cs.looking = false;
      cs.group = groupFor(upstream, peer, result.process);
      return;
    case LocateStatus::NotYet:
      if (attempt < kMaxLookupAttempts) {
        retryLookup(PendingLookup{connection, generation, peer, upstream, attempt + 1,
                                  now() + retryDelayNs(attempt)});
        return;
      }
      cs.looking = false;  // the next request on it tries again
      return;
    case LocateStatus::Unlocatable:
      cs.looking = false;
      if (as.mode == AddressState::Mode::Whole) {
        cs.group = groupFor(upstream, peer, ProcessId{});
      } else {
        cs.untracked = true;  // its neighbours were found: never mix the two views
      }
      return;
  }
}

int32_t Advisor::groupFor(const std::string& upstream, const SocketPeer& peer,
                          const ProcessId& process) {
  std::string key = process.pid != 0 ? "pid:" + std::to_string(process.pid) + ":" +
                                           std::to_string(process.start_time)
                                     : "addr:" + addressKey(upstream, peer.peer_name);
  if (auto it = group_index_.find(key); it != group_index_.end()) return it->second;
  int32_t index = -1;
  if (groups_.size() >= kMaxGroups) {
    // Reuse the quietest group with nothing in flight (a process that has gone, most likely).
    int64_t oldest = INT64_MAX;
    for (size_t i = 0; i < groups_.size(); ++i) {
      const Group& g = *groups_[i];
      if (g.in_flight == 0 && g.probe == nullptr && g.stream().lastNs() < oldest) {
        oldest = g.stream().lastNs();
        index = static_cast<int32_t>(i);
      }
    }
    if (index < 0) return -1;
    group_index_.erase(groups_[static_cast<size_t>(index)]->key);
    std::erase_if(connections_, [index](const auto& c) { return c.second.group == index; });
    groups_[static_cast<size_t>(index)] = std::make_unique<Group>(stream_params_);
  } else {
    index = static_cast<int32_t>(groups_.size());
    groups_.push_back(std::make_unique<Group>(stream_params_));
  }
  Group& g = *groups_[static_cast<size_t>(index)];
  g.key = key;
  g.upstream = upstream;
  g.peer = peer;
  g.process = process;
  if (process.pid != 0) {
    g.schedstat_path = "/proc/" + std::to_string(process.pid) + "/task/" +
                       std::to_string(process.pid) + "/schedstat";
  }
  group_index_.emplace(std::move(key), index);
  return index;
}

void Advisor::onCpuTimer() {
  const int64_t t = now();
  bool busy = false;
  for (auto& gp : groups_) {
    Group& g = *gp;
    if (g.schedstat_path.empty() || !g.cpu_readable) continue;
    if (g.stream().lastNs() < t - kCpuSampleIdleNs && g.in_flight == 0) continue;
    busy = true;
    // procfs answers from memory: this read never waits on a disk.
    char text[128];
    int fd = ::open(g.schedstat_path.c_str(), O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? ::read(fd, text, sizeof text) : -1;
    if (fd >= 0) ::close(fd);
    int64_t run = 0, wait = 0;
    if (n <= 0 || !parseSchedstat(std::string_view(text, static_cast<size_t>(n)), run, wait)) {
      g.cpu_readable = false;  // gone, or not ours to read
      continue;
    }
    g.stream().cpuSample(t, run, wait);
    if (trace_ != nullptr) {
      std::fprintf(trace_, "%d %lld %lld %lld 0 - CPU -\n", static_cast<int>(&gp - groups_.data()),
                   static_cast<long long>(t), static_cast<long long>(run), static_cast<long long>(wait));
    }
  }
  if (!busy) cpu_timer_.stop();
}


// ---- verdicts -----------------------------------------------------------------------------------

void Advisor::onRefreshTimer() { refresh(now()); }

bool Advisor::probeWanted(EndpointId e) const {
  const EndpointState& es = endpoint_state_[e];
  const uint64_t rows = es.evidence.probes;
  // Endpoints too short for probes to land in their tails stop asking after a while too.
  if (es.evidence.samples >= kProbeSamplesEnough) return false;
  return rows < kProbeRowsWanted ||
         (es.verdict.s3 == Opinion::Unclear && rows < kProbeRowsWantedUnclear);
}

void Advisor::refresh(int64_t t) {
  const size_t n = endpoints_.size();
  endpoint_state_.resize(n);
  std::vector<StreamView> views;
  views.reserve(groups_.size());
  for (auto& gp : groups_) {
    Group& g = *gp;
    g.stream().settle(t);
    g.background = streamBackground(g.stream(), n, verdict_params_);
    g.probe_pool = streamProbePool(g.stream(), n, verdict_params_);
    views.push_back(StreamView{&g.stream(), &g.background, &g.probe_pool});
  }
  for (size_t e = 0; e < n; ++e) {
    const auto id = static_cast<EndpointId>(e);
    EndpointState& es = endpoint_state_[e];
    es.evidence = gatherEvidence(views, id, t, config_.probe, &es.processes);
    es.verdict = decide(es.evidence, verdict_params_);
    es.flagged_ms = es.verdict.kind == VerdictKind::BlocksLoop ? es.verdict.blocking_ms : 0;
    es.probe_wanted = probeWanted(id);
  }
  blocking_routes_.clear();
  for (size_t e = 0; e < n; ++e) {
    if (endpoint_state_[e].verdict.kind != VerdictKind::BlocksLoop) continue;
    const EndpointInfo& info = endpoints_.info(static_cast<EndpointId>(e));
    std::pair<std::string, std::string> key{info.upstream, info.route};
    if (std::find(blocking_routes_.begin(), blocking_routes_.end(), key) == blocking_routes_.end()) {
      blocking_routes_.push_back(std::move(key));
    }
  }
  for (auto& gp : groups_) {
    Group& g = *gp;
    double busy = 0;
    const double alive_s =
        g.stream().firstNs() >= 0 ? static_cast<double>(t - g.stream().firstNs()) / 1e9 : 0;
    if (alive_s > 0) {
      for (size_t e = 0; e < n; ++e) {
        const FlushCounters* fc = g.stream().flush().counters(static_cast<EndpointId>(e));
        if (fc == nullptr || endpoint_state_[e].flagged_ms <= 0) continue;
        busy += static_cast<double>(fc->completions) / alive_s * endpoint_state_[e].flagged_ms / 1000;
      }
    }
    g.busy_ratio = std::min(1.0, busy);
  }
  // Forget connections long unused (closed ones whose address was never reused).
  if (connections_.size() > kMaxConnections) {
    std::erase_if(connections_, [t](const auto& c) {
      return !c.second.looking && t - c.second.last_used_ns > kConnectionIdleNs;
    });
  }
}

Report Advisor::report() {
  const int64_t t = now();
  refresh(t);
  Report r;
  r.enabled = config_.enabled;
  r.probe = config_.probe;
  r.observed_s = static_cast<double>(t - observe_start_ns_) / 1e9;
  r.observed_requests = observed_;
  r.unattributed_requests = unattributed_;
  for (size_t e = 0; e < endpoints_.size(); ++e) {
    const EndpointState& es = endpoint_state_[e];
    if (es.evidence.samples == 0) continue;
    r.endpoints.push_back(
        EndpointReport{endpoints_.info(static_cast<EndpointId>(e)), es.evidence, es.verdict, es.processes});
  }
  auto rank = [](VerdictKind k) {
    return k == VerdictKind::BlocksLoop ? 0 : k == VerdictKind::Ok ? 1 : 2;
  };
  std::stable_sort(r.endpoints.begin(), r.endpoints.end(),
                   [&](const EndpointReport& a, const EndpointReport& b) {
                     if (rank(a.verdict.kind) != rank(b.verdict.kind)) {
                       return rank(a.verdict.kind) < rank(b.verdict.kind);
                     }
                     if (a.verdict.loop_share != b.verdict.loop_share) {
                       return a.verdict.loop_share > b.verdict.loop_share;
                     }
                     return a.evidence.samples > b.evidence.samples;
                   });
  for (const auto& gp : groups_) {
    const Group& g = *gp;
    if (g.stream().completions() == 0) continue;
    r.processes.push_back(ProcessReport{g.upstream, g.peer.peer_name, g.process.pid,
                                        g.stream().completions(), g.busy_ratio,
                                        g.stream().flush().cpuStalls()});
  }
  for (const auto& [key, as] : addresses_) {
    if (as.mode != AddressState::Mode::Whole) continue;
    r.notes.push_back("cannot tell the processes behind " + key.substr(key.find('|') + 1) +
                      " (upstream " + key.substr(0, key.find('|')) + ") apart: " + as.why +
                      "; if several processes serve it, its statistics are diluted");
  }
  return r;
}

const Verdict* Advisor::verdictFor(std::string_view route, std::string_view method,
                                   std::string_view target) {
  EndpointId id = 0;
  if (!endpoints_.find(route, method, target, id) || id >= endpoint_state_.size()) return nullptr;
  return &endpoint_state_[id].verdict;
}

std::vector<EndpointReport> Advisor::blockingEndpoints(std::string_view upstream) const {
  std::vector<EndpointReport> out;
  for (size_t e = 0; e < endpoint_state_.size() && e < endpoints_.size(); ++e) {
    const EndpointState& es = endpoint_state_[e];
    const EndpointInfo& info = endpoints_.info(static_cast<EndpointId>(e));
    if (es.verdict.kind == VerdictKind::BlocksLoop && info.upstream == upstream) {
      out.push_back(EndpointReport{info, es.evidence, es.verdict, es.processes});
    }
  }
  return out;
}

bool Advisor::blocksLoop(std::string_view target, std::string_view route) const {
  if (!config_.enabled) return false;
  for (const auto& [upstream, name] : blocking_routes_) {
    if (upstream == target && name == route) return true;
  }
  return false;
}

void Advisor::writeMetrics(metrics::PrometheusWriter& out) const {
  out.family("loopguard_endpoint_blocking_seconds_total", "counter",
             "Loop time of the app attributed to endpoints the advisor found blocking it.");
  for (size_t e = 0; e < endpoint_state_.size() && e < endpoints_.size(); ++e) {
    const EndpointState& es = endpoint_state_[e];
    if (es.blocking_seconds <= 0 && es.flagged_ms <= 0) continue;
    const EndpointInfo& info = endpoints_.info(static_cast<EndpointId>(e));
    out.sample("loopguard_endpoint_blocking_seconds_total",
               {{"route", info.route}, {"method", info.method}, {"path", info.path}},
               es.blocking_seconds);
  }
  out.family("loopguard_upstream_loop_busy_ratio", "gauge",
             "Share of the time blocking endpoints hold the event loop of the upstream's busiest "
             "process (advisor estimate).");
  std::unordered_map<std::string, double> by_upstream;
  for (const auto& gp : groups_) {
    double& v = by_upstream[gp->upstream];
    v = std::max(v, gp->busy_ratio);
  }
  std::vector<std::pair<std::string, double>> sorted(by_upstream.begin(), by_upstream.end());
  std::sort(sorted.begin(), sorted.end());
  for (const auto& [name, ratio] : sorted) {
    out.sample("loopguard_upstream_loop_busy_ratio", {{"upstream", name}}, ratio);
  }
}

// ---- probing (S3) ---------------------------------------------------------------------------------

void Advisor::armProbeTimer(uint64_t within_ms) {
  if (stopped_ || !config_.probe) return;
  if (within_ms == 0) {
    if (probe_timer_.active()) return;
    std::uniform_int_distribution<uint64_t> interval(kProbeIntervalMinMs, kProbeIntervalMaxMs);
    within_ms = interval(jitter_);
  } else if (probe_timer_.active() &&
             probe_due_ns_ <= now() + static_cast<int64_t>(within_ms) * kNsPerMs) {
    return;
  }
  probe_timer_.start(within_ms);
  probe_timer_.unref();
  probe_due_ns_ = now() + static_cast<int64_t>(within_ms) * kNsPerMs;
}

void Advisor::onProbeTimer() {
  if (stopped_ || !config_.probe) return;
  bool wanted = false;
  const int64_t t = now();
  for (auto& gp : groups_) {
    Group& g = *gp;
    if (g.suspects_in_flight == 0) continue;
    wanted = true;
    if (g.probe == nullptr) {
      openProbe(g);
      continue;
    }
    if (!g.probe->idle()) continue;  // the last one is still out: its lag says it all
    std::string request = "GET " + config_.probe_path + " HTTP/1.1\r\nHost: " + g.peer.peer_name +
                          "\r\nUser-Agent: loopguard-advice-probe\r\nX-Loopguard-Probe: 1\r\n\r\n";
    if (g.probe->send(request)) {
      g.stream().probeSent(t);
      g.probe_sent_ns = t;
      if (trace_ != nullptr) {
        std::fprintf(trace_, "%d %lld 0 0 0 - PROBESENT -\n", static_cast<int>(&gp - groups_.data()),
                     static_cast<long long>(t));
      }
    }
  }
  if (wanted) armProbeTimer();
}

void Advisor::openProbe(Group& g) {
  AddressState& as = addresses_[addressKey(g.upstream, g.peer.peer_name)];
  if (as.probes_connecting > 0 || now() < as.probe_backoff_until_ns) return;
  ProbeOwner& owner = *this;  // a private base: convert here, not inside emplace()
  ProbeConnection& p = probes_.emplace(loop_, buffers_, owner);
  p.address = g.peer.peer_name;
  p.upstream = g.upstream;
  if (p.connect(g.peer) != 0) {
    p.close();
    as.probe_backoff_until_ns = now() + 1000 * kNsPerMs;
    return;
  }
  ++as.probes_connecting;
}

void Advisor::onProbeConnected(ProbeConnection& p) {
  AddressState& as = addresses_[addressKey(p.upstream, p.address)];
  if (as.probes_connecting > 0) --as.probes_connecting;
  SocketPeer peer;
  const int fd = p.fd();
  if (fd < 0 || !describeSocket(fd, peer)) {
    p.close();
    return;
  }
  if (as.mode == AddressState::Mode::Whole) {
    onLocated(&p, 0, peer, p.upstream, 0, LocateResult{LocateStatus::Unlocatable, {}, as.why});
    return;
  }
  startLookup(&p, 0, peer, p.upstream, 0);
}

void Advisor::onProbeHead(ProbeConnection& p) {
  if (p.group < 0) return;
  Group& g = *groups_[static_cast<size_t>(p.group)];
  const int64_t t = now();
  g.stream().probeDone(t);
  if (trace_ != nullptr) {
    std::fprintf(trace_, "%d %lld %lld 0 0 - PROBE -\n", p.group,
                 static_cast<long long>(g.probe_sent_ns), static_cast<long long>(t));
  }
}

void Advisor::onProbeGone(ProbeConnection& p) {
  AddressState& as = addresses_[addressKey(p.upstream, p.address)];
  if (!p.connected() && as.probes_connecting > 0) {
    // Failed while connecting: back off before the next one.
    --as.probes_connecting;
    ++as.probe_failures;
    as.probe_backoff_until_ns = now() + std::min<int64_t>(2000, 50 * as.probe_failures) * kNsPerMs;
  }
  if (p.group >= 0) {
    Group& g = *groups_[static_cast<size_t>(p.group)];
    if (g.probe == &p) g.probe = nullptr;
    g.stream().probeLost();  // if one was out, it never got an answer
  }
}

void Advisor::closeProbes() {
  for (auto& gp : groups_) {
    if (gp->probe != nullptr) gp->stream().probeLost();
    gp->probe = nullptr;
  }
  probes_.forEach([](ProbeConnection& p) { p.close(); });
  for (auto& [key, as] : addresses_) as.probes_connecting = 0;
}

void Advisor::onProbeClosed(ProbeConnection& p) { probes_.retire(loop_, p); }

ProbeConnection* Advisor::openProbeAt(const void* connection) {
  ProbeConnection* found = nullptr;
  probes_.forEach([&](ProbeConnection& p) {
    if (&p == connection && !p.closing()) found = &p;
  });
  return found;
}

}  // namespace loopguard::advice
