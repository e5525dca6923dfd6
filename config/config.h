// The validated configuration: plain structs, produced once by the loader (config/loader.h) and
// never touched by YAML again. The data path reads these through an immutable snapshot
// (std::shared_ptr<const Config>), so a reload swaps the snapshot while in-flight requests keep
// the one they started with.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace loopguard::config {

using Duration = std::chrono::milliseconds;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

// Where a value came from in the YAML file; used to point errors found after parsing
// (dangling references, duplicates) at the right spot.
struct SourcePos {
  int line = 0;  // 1-based; 0 = unknown
  int column = 0;
  // Without it the defaulted operator== of Upstream, Pool and Route would be deleted.
  bool operator==(const SourcePos&) const = default;
};

// A socket address as written in the config: "host:port", "[v6]:port" or "unix:/path".
// `host` may be a literal IP or a DNS name (resolved at run time by the upstream code).
struct Address {
  enum class Kind { Tcp, Unix };
  Kind kind = Kind::Tcp;
  std::string host;  // Tcp only
  uint16_t port = 0; // Tcp only
  std::string path;  // Unix only

  std::string toString() const;  // back to the config spelling
  bool operator==(const Address&) const = default;
};

enum class LogFormat { Text, Json };

struct LogConfig {
  std::string level = "info";  // trace | debug | info | warn | error
  LogFormat format = LogFormat::Text;
  bool access_log = true;
  bool operator==(const LogConfig&) const = default;
};

struct AdminConfig {
  std::optional<Address> listen;  // unset = no admin listener
  // A file holding a bearer token (read at start and at every reload). Unset: the endpoints
  // that reveal the config or change state answer loopback peers only; set: they answer
  // anyone presenting `Authorization: Bearer <token>`, and nobody else.
  std::optional<std::string> token_file;
  bool operator==(const AdminConfig&) const = default;
};

struct GlobalLimits {
  uint64_t max_connections = 10000;
  uint64_t max_header_bytes = 64 * kKiB;
  uint64_t max_body_bytes = 0;  // 0 = unlimited
  bool operator==(const GlobalLimits&) const = default;
};

struct Timeouts {
  Duration header{10'000};
  Duration body{30'000};  // longest silence while a request body arrives
  Duration idle{60'000};
  Duration drain{30'000};
  bool operator==(const Timeouts&) const = default;
};

enum class Balance { LeastRequest, RoundRobin };

struct Upstream {
  std::string name;
  SourcePos pos;
  std::vector<Address> endpoints;  // at least one
  Balance balance = Balance::LeastRequest;
  Duration connect_timeout{2'000};
  Duration response_timeout{60'000};
  Duration read_timeout{60'000};  // longest silence once the response head is in (or while writing)
  uint64_t max_idle_connections = 64;
  Duration idle_timeout{4'000};
  Duration resolve_every{30'000};
  bool operator==(const Upstream&) const = default;
};

struct ReadyProbe {
  std::optional<std::string> path;  // unset = a plain connect is enough
  Duration timeout{30'000};
  bool operator==(const ReadyProbe&) const = default;
};

struct Backoff {
  Duration initial{100};
  Duration max{10'000};
  bool operator==(const Backoff&) const = default;
};

struct Pool {
  std::string name;
  SourcePos pos;
  // At least one element. {socket} or {port} (exactly one of the two, here or in `env`) and
  // {index} are placeholders, substituted per worker.
  std::vector<std::string> command;
  uint32_t workers = 2;
  uint32_t concurrency_per_worker = 1;
  std::map<std::string, std::string> env;
  std::string workdir = ".";
  ReadyProbe ready;
  Duration request_timeout{60'000};
  uint64_t max_requests = 0;  // 0 = never recycle by count
  uint64_t max_rss = 0;       // bytes; 0 = never recycle by memory
  Backoff restart_backoff;
  Duration slow_after{0};  // 0 = off
  std::vector<std::string> on_slow;  // may hold {pid}
  bool operator==(const Pool&) const = default;
  // Workers listen on a loopback {port} (else on a unix {socket}).
  bool listensOnPort() const;
};

enum class MatchKind { Prefix, Exact, Regex };

struct RouteMatch {
  MatchKind kind = MatchKind::Prefix;
  std::string pattern;               // the prefix, exact path or RE2 regex (checked to compile)
  std::vector<std::string> methods;  // empty = any; upper-case
  std::string host;                  // empty = any; compared case-insensitively, port ignored
  bool operator==(const RouteMatch&) const = default;
};

// Which queued request a freed slot goes to. Adaptive: FIFO while the queue drains, LIFO once a
// queue stands, and a standing queue's waiters are refused past a short target (CoDel-style).
enum class QueueOrder { Fifo, Lifo, Adaptive };

struct RouteLimits {
  std::optional<uint64_t> max_in_flight;  // fixed limit; unset = unlimited (or auto)
  bool max_in_flight_auto = false;        // `max_in_flight: auto`: adapt to measured latency
  uint64_t max_in_flight_min = 1;         // bounds of the adaptive limit (auto only)
  uint64_t max_in_flight_max = 1000;
  uint64_t max_queue = 64;
  Duration queue_timeout{5'000};
  QueueOrder queue_order = QueueOrder::Fifo;
  int overflow_status = 503;  // 503 | 429
  bool operator==(const RouteLimits&) const = default;
};

enum class TargetKind { Upstream, Pool };

struct Route {
  std::string name;
  SourcePos pos;
  RouteMatch match;
  TargetKind target_kind = TargetKind::Upstream;
  std::string target;  // name of an upstream or a pool, per target_kind
  RouteLimits limits;
  bool buffer_request = false;  // default: true for pool routes, false for upstream routes
  uint64_t buffer_limit = 16 * kMiB;
  Duration timeout{0};  // whole-request budget; 0 = none
  bool operator==(const Route&) const = default;
};

// The loop-block advisor (proxy/advice/): which endpoints block the app's event loop.
struct AdviceConfig {
  bool enabled = true;             // passive statistics, O(1) per upstream response
  bool probe = false;              // active probe requests while suspects are in flight
  std::string probe_path = "/";    // what the probe requests (origin-form; its status is ignored)
  uint64_t min_samples = 30;       // fewer observed requests: "not_enough_data"
  bool operator==(const AdviceConfig&) const = default;
};

struct OffloadConfig {
  Address listen;
  std::string pool;  // name of an entry in `pools`
  // The implicit route's queue: requests waiting for a free worker. The proxy in front should
  // hold the real limits, so a short queue here turns a saturated pool into a fast 503.
  uint64_t max_queue = 1024;
  std::optional<Duration> queue_timeout;  // unset = the pool's request_timeout
  bool operator==(const OffloadConfig&) const = default;
};

struct Config {
  std::string source_path;  // the file it was read from (for messages and reload)

  std::optional<Address> listen;  // required by `loopguard proxy`
  AdminConfig admin;
  LogConfig log;
  GlobalLimits limits;
  Timeouts timeouts;
  std::vector<Upstream> upstreams;  // in file order; names unique
  std::vector<Pool> pools;          // in file order; names unique
  std::vector<Route> routes;        // in file order (first match wins); names unique
  std::optional<OffloadConfig> offload;  // required by `loopguard offload`
  AdviceConfig advice;

  const Upstream* findUpstream(const std::string& name) const;
  const Pool* findPool(const std::string& name) const;
  // Some route sends requests to the pool `name` (the proxy starts only such pools).
  bool routesToPool(const std::string& name) const;
};

}  // namespace loopguard::config
