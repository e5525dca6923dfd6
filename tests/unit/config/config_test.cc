#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "config/loader.h"
#include "config/to_json.h"
#include "config/values.h"

namespace loopguard::config {
namespace {

using namespace std::chrono_literals;

// The example from SPEC.md "Config (YAML)", verbatim.
constexpr std::string_view kSpecExample =
    R"yaml(listen: "0.0.0.0:8080"            # host:port or unix:/path
admin:
  listen: "127.0.0.1:9901"        # off unless set; keep it on loopback or a private port
log:
  level: info
  format: text                    # text | json
  access_log: true                # one line per request: time, id, method, path, route, status, bytes, duration, target
limits:
  max_connections: 10000          # further connections wait in the accept backlog
  max_header_bytes: 64KiB         # over: 431
  max_body_bytes: 0               # 0 = no limit (bodies are streamed); over: 413
timeouts:
  header: 10s                     # whole request head must arrive within (slowloris); else 408 + close
  body: 30s                       # longest silence while a request body arrives; else 408 + close
  idle: 60s                       # keep-alive idle
  drain: 30s                      # graceful shutdown budget
upstreams:
  app:
    endpoints: ["127.0.0.1:8000"] # host:port | dns-name:port | unix:/path
    balance: least_request        # least_request | round_robin
    connect_timeout: 2s           # over: 502 (or retry another endpoint, see below)
    response_timeout: 60s         # until the response head; over: 504
    read_timeout: 60s             # longest silence while the response body streams (or the request body is
                                  # written); over: the exchange ends, the client's response is cut (or 504 if
                                  # nothing was sent yet) and the connection is not reused
    max_idle_connections: 64      # keep-alive pool per endpoint
    idle_timeout: 4s              # drop pooled connections idle this long: below uvicorn's 5s keep-alive,
                                  # so the proxy never writes to a connection the app is closing
    resolve_every: 30s            # re-resolve DNS names (Kubernetes headless services)
pools:
  cpu:
    command: ["python3", "-m", "uvicorn", "app:app", "--uds", "{socket}"]
    # {socket}: a per-worker unix socket path loopguard chooses; {port}: a free
    # per-worker loopback port instead; {index}: 0..workers-1. Env LOOPGUARD_WORKER_INDEX is set too.
    workers: 2
    concurrency_per_worker: 1
    env: {PYTHONUNBUFFERED: "1"}
    workdir: "."
    ready:
      path: /                     # HTTP GET must answer (any status < 500); omit for plain connect
      timeout: 30s                # a worker not ready by then is killed and restarted
    request_timeout: 60s          # a request running longer: worker killed (SIGTERM, then SIGKILL), client gets 504
    max_requests: 0               # recycle a worker after N requests (0 = never), with jitter
    max_rss: 0                    # recycle a worker whose RSS exceeds this (0 = never)
    restart_backoff: {initial: 100ms, max: 10s}
    slow_after: 0                 # a request running longer is logged with worker pid, route and elapsed
                                  # time, and `on_slow` runs once for it (0 = off)
    on_slow: []                   # e.g. ["py-spy", "dump", "--pid", "{pid}"]: its output goes to the log
routes:                           # first match wins
  - name: hash
    match:
      prefix: /cpu/               # exactly one of prefix | exact | regex
      methods: [GET, POST]        # optional
      host: api.example.com       # optional, matches the Host header
    pool: cpu                     # exactly one of pool | upstream
    limits:
      max_in_flight: 2            # omit = unlimited
      max_queue: 64               # waiting requests beyond max_in_flight; full: 503 at once
      queue_timeout: 5s           # waited longer: 503
      overflow_status: 503        # 503 | 429
    buffer_request: true          # receive the whole body before taking a slot, so a slow upload never
                                  # holds a worker; default true for pool routes, false for upstream routes
    buffer_limit: 16MiB           # a buffered body larger than this: 413
    timeout: 30s                  # whole-request budget for this route; over: 504
  - name: default
    match: {prefix: /}
    upstream: app
    limits: {max_in_flight: 1000}
offload:                          # read only by `loopguard offload`
  listen: "unix:/var/run/loopguard/offload.sock"
  pool: cpu
)yaml";

// The smallest config `loopguard proxy` accepts, used as a base for error cases.
constexpr std::string_view kMinimal = R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app:
    endpoints: ["127.0.0.1:8000"]
routes:
  - match: {prefix: /}
    upstream: app
)yaml";

LoadResult load(std::string_view yaml, Purpose purpose = Purpose::Proxy) {
  return loadConfigString(yaml, "test.yaml", purpose);
}

std::string formatted(const LoadResult& result) {
  std::string out;
  for (const ConfigError& e : result.errors) out += e.format() + "\n";
  return out;
}

// Exactly one error, at line:col, whose message contains `needle`.
void expectOneError(std::string_view yaml, int line, int col, std::string_view needle,
                    Purpose purpose = Purpose::Proxy) {
  LoadResult result = load(yaml, purpose);
  ASSERT_EQ(result.errors.size(), 1u) << yaml << "\n---\n" << formatted(result);
  const ConfigError& e = result.errors[0];
  EXPECT_EQ(e.line, line) << e.format();
  EXPECT_EQ(e.column, col) << e.format();
  EXPECT_NE(e.message.find(needle), std::string::npos) << e.format() << "\nwanted: " << needle;
  EXPECT_EQ(result.config, nullptr);
}

// At least one error, and one of them contains `needle`.
void expectSomeError(std::string_view yaml, std::string_view needle,
                     Purpose purpose = Purpose::Proxy) {
  LoadResult result = load(yaml, purpose);
  EXPECT_FALSE(result.ok()) << yaml;
  EXPECT_NE(formatted(result).find(needle), std::string::npos)
      << yaml << "\n---\n"
      << formatted(result) << "wanted: " << needle;
}

Address tcp(std::string host, uint16_t port) {
  Address a;
  a.kind = Address::Kind::Tcp;
  a.host = std::move(host);
  a.port = port;
  return a;
}

Address unixPath(std::string path) {
  Address a;
  a.kind = Address::Kind::Unix;
  a.path = std::move(path);
  return a;
}

// ---------------------------------------------------------------------------------------------
// The SPEC example and defaults

TEST(ConfigExampleTest, SpecExampleParsesToExpectedValues) {
  LoadResult result = load(kSpecExample, Purpose::Proxy);
  ASSERT_TRUE(result.ok()) << formatted(result);
  ASSERT_NE(result.config, nullptr);
  const Config& c = *result.config;

  EXPECT_EQ(c.source_path, "test.yaml");
  EXPECT_EQ(c.listen, tcp("0.0.0.0", 8080));
  EXPECT_EQ(c.admin.listen, tcp("127.0.0.1", 9901));
  EXPECT_EQ(c.log.level, "info");
  EXPECT_EQ(c.log.format, LogFormat::Text);
  EXPECT_TRUE(c.log.access_log);
  EXPECT_EQ(c.limits.max_connections, 10000u);
  EXPECT_EQ(c.limits.max_header_bytes, 64u * 1024);
  EXPECT_EQ(c.limits.max_body_bytes, 0u);
  EXPECT_EQ(c.timeouts.header, 10s);
  EXPECT_EQ(c.timeouts.body, 30s);
  EXPECT_EQ(c.timeouts.send, 60s);
  EXPECT_EQ(c.timeouts.idle, 60s);
  EXPECT_EQ(c.timeouts.drain, 30s);

  ASSERT_EQ(c.upstreams.size(), 1u);
  const Upstream& app = c.upstreams[0];
  EXPECT_EQ(app.name, "app");
  EXPECT_EQ(app.pos.line, 18);
  EXPECT_EQ(app.pos.column, 3);
  EXPECT_EQ(app.endpoints, std::vector<Address>{tcp("127.0.0.1", 8000)});
  EXPECT_EQ(app.balance, Balance::LeastRequest);
  EXPECT_EQ(app.connect_timeout, 2s);
  EXPECT_EQ(app.response_timeout, 60s);
  EXPECT_EQ(app.read_timeout, 60s);
  EXPECT_EQ(app.max_idle_connections, 64u);
  EXPECT_EQ(app.idle_timeout, 4s);
  EXPECT_EQ(app.resolve_every, 30s);

  ASSERT_EQ(c.pools.size(), 1u);
  const Pool& cpu = c.pools[0];
  EXPECT_EQ(cpu.name, "cpu");
  EXPECT_EQ(cpu.command,
            (std::vector<std::string>{"python3", "-m", "uvicorn", "app:app", "--uds", "{socket}"}));
  EXPECT_EQ(cpu.workers, 2u);
  EXPECT_EQ(cpu.concurrency_per_worker, 1u);
  EXPECT_EQ(cpu.env, (std::map<std::string, std::string>{{"PYTHONUNBUFFERED", "1"}}));
  EXPECT_EQ(cpu.workdir, ".");
  EXPECT_EQ(cpu.ready.path, "/");
  EXPECT_EQ(cpu.ready.timeout, 30s);
  EXPECT_EQ(cpu.request_timeout, 60s);
  EXPECT_EQ(cpu.max_requests, 0u);
  EXPECT_EQ(cpu.max_rss, 0u);
  EXPECT_EQ(cpu.restart_backoff.initial, 100ms);
  EXPECT_EQ(cpu.restart_backoff.max, 10s);
  EXPECT_EQ(cpu.slow_after, 0ms);
  EXPECT_TRUE(cpu.on_slow.empty());

  ASSERT_EQ(c.routes.size(), 2u);
  const Route& hash = c.routes[0];
  EXPECT_EQ(hash.name, "hash");
  EXPECT_EQ(hash.pos.line, 50);
  EXPECT_EQ(hash.pos.column, 5);
  EXPECT_EQ(hash.match.kind, MatchKind::Prefix);
  EXPECT_EQ(hash.match.pattern, "/cpu/");
  EXPECT_EQ(hash.match.methods, (std::vector<std::string>{"GET", "POST"}));
  EXPECT_EQ(hash.match.host, "api.example.com");
  EXPECT_EQ(hash.target_kind, TargetKind::Pool);
  EXPECT_EQ(hash.target, "cpu");
  EXPECT_EQ(hash.limits.max_in_flight, 2u);
  EXPECT_EQ(hash.limits.max_queue, 64u);
  EXPECT_EQ(hash.limits.queue_timeout, 5s);
  EXPECT_EQ(hash.limits.overflow_status, 503);
  EXPECT_TRUE(hash.buffer_request);
  EXPECT_EQ(hash.buffer_limit, 16u * 1024 * 1024);
  EXPECT_EQ(hash.timeout, 30s);

  const Route& fallback = c.routes[1];
  EXPECT_EQ(fallback.name, "default");
  EXPECT_EQ(fallback.match.kind, MatchKind::Prefix);
  EXPECT_EQ(fallback.match.pattern, "/");
  EXPECT_TRUE(fallback.match.methods.empty());
  EXPECT_TRUE(fallback.match.host.empty());
  EXPECT_EQ(fallback.target_kind, TargetKind::Upstream);
  EXPECT_EQ(fallback.target, "app");
  EXPECT_EQ(fallback.limits.max_in_flight, 1000u);
  EXPECT_EQ(fallback.limits.max_queue, 64u);
  EXPECT_FALSE(fallback.buffer_request);
  EXPECT_EQ(fallback.timeout, 0ms);

  ASSERT_TRUE(c.offload.has_value());
  EXPECT_EQ(c.offload->listen, unixPath("/var/run/loopguard/offload.sock"));
  EXPECT_EQ(c.offload->pool, "cpu");

  EXPECT_EQ(c.findUpstream("app"), &c.upstreams[0]);
  EXPECT_EQ(c.findUpstream("cpu"), nullptr);
  EXPECT_EQ(c.findPool("cpu"), &c.pools[0]);
  EXPECT_EQ(c.findPool("app"), nullptr);
}

TEST(ConfigExampleTest, SpecExampleIsValidForEveryPurpose) {
  EXPECT_TRUE(load(kSpecExample, Purpose::Offload).ok());
  EXPECT_TRUE(load(kSpecExample, Purpose::Any).ok());
}

TEST(ConfigDefaultsTest, MinimalConfigGetsDefaultsFromConfigH) {
  LoadResult result = load(kMinimal);
  ASSERT_TRUE(result.ok()) << formatted(result);
  const Config& c = *result.config;
  const Config defaults;
  EXPECT_EQ(c.admin, defaults.admin);
  EXPECT_FALSE(c.admin.listen.has_value());
  EXPECT_EQ(c.log, defaults.log);
  EXPECT_EQ(c.limits, defaults.limits);
  EXPECT_EQ(c.timeouts, defaults.timeouts);
  EXPECT_FALSE(c.offload.has_value());
  EXPECT_TRUE(c.pools.empty());

  Upstream expected_upstream;
  expected_upstream.name = "app";
  expected_upstream.pos = {3, 3};
  expected_upstream.endpoints = {tcp("127.0.0.1", 8000)};
  EXPECT_EQ(c.upstreams, std::vector<Upstream>{expected_upstream});

  ASSERT_EQ(c.routes.size(), 1u);
  const Route& r = c.routes[0];
  EXPECT_EQ(r.name, "routes[0]");  // unnamed: its place in the list
  EXPECT_EQ(r.limits, RouteLimits{});
  EXPECT_FALSE(r.limits.max_in_flight.has_value());
  EXPECT_EQ(r.buffer_limit, 16 * kMiB);
  EXPECT_EQ(r.timeout, 0ms);
  EXPECT_FALSE(r.buffer_request);
}

TEST(ConfigDefaultsTest, PoolDefaultsAndBufferRequestDefaultsPerTarget) {
  LoadResult result = load(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app: {endpoints: ["unix:/tmp/app.sock"]}
pools:
  cpu: {command: [worker, "--port={port}"]}
routes:
  - {name: a, match: {prefix: /a}, pool: cpu}
  - {name: b, match: {prefix: /b}, pool: cpu, buffer_request: false}
  - {name: c, match: {prefix: /c}, upstream: app}
  - {name: d, match: {prefix: /d}, upstream: app, buffer_request: true}
)yaml");
  ASSERT_TRUE(result.ok()) << formatted(result);
  const Config& c = *result.config;
  ASSERT_EQ(c.routes.size(), 4u);
  EXPECT_TRUE(c.routes[0].buffer_request);
  EXPECT_FALSE(c.routes[1].buffer_request);
  EXPECT_FALSE(c.routes[2].buffer_request);
  EXPECT_TRUE(c.routes[3].buffer_request);

  ASSERT_EQ(c.pools.size(), 1u);
  Pool expected;
  expected.name = "cpu";
  expected.pos = {5, 3};
  expected.command = {"worker", "--port={port}"};
  EXPECT_EQ(c.pools[0], expected);
  EXPECT_FALSE(c.pools[0].ready.path.has_value());
  EXPECT_EQ(c.upstreams[0].endpoints, std::vector<Address>{unixPath("/tmp/app.sock")});
}

TEST(ConfigDefaultsTest, EmptySectionsAndNullOptionalsKeepDefaults) {
  LoadResult result = load(R"yaml(listen: "127.0.0.1:8080"
admin:
log: {}
limits:
timeouts: {}
upstreams:
  app: {endpoints: ["127.0.0.1:8000"]}
pools:
routes:
  - match: {prefix: /}
    upstream: app
    limits: {max_in_flight: null}
offload: null
)yaml");
  ASSERT_TRUE(result.ok()) << formatted(result);
  EXPECT_FALSE(result.config->admin.listen.has_value());
  EXPECT_FALSE(result.config->routes[0].limits.max_in_flight.has_value());
  EXPECT_FALSE(result.config->offload.has_value());
  EXPECT_EQ(result.config->log, LogConfig{});
}

TEST(ConfigDefaultsTest, ValueVariantsAccepted) {
  LoadResult result = load(R"yaml(listen: "unix:run/proxy.sock"
admin: {listen: "[::1]:9901"}
log: {level: debug, format: json, access_log: false}
limits: {max_connections: 5, max_header_bytes: 1KiB, max_body_bytes: 10MB}
timeouts: {header: 1.5s, body: 250ms, send: 3s, idle: 2m, drain: 0}
upstreams:
  my-app.v2_x:
    endpoints: ["api.internal.svc:80", "10.0.0.1:8000", "[fe80::1%eth0]:81"]
    balance: round_robin
    read_timeout: 1.5s
    max_idle_connections: 0
routes:
  - name: re
    match: {regex: "/items/[0-9]+", methods: [get, Post, GET, PROPFIND], host: API.Example.com}
    upstream: my-app.v2_x
    limits: {max_queue: 0, overflow_status: 429}
    buffer_limit: 512
    timeout: 250ms
  - {name: ex, match: {exact: /health}, upstream: my-app.v2_x}
)yaml");
  ASSERT_TRUE(result.ok()) << formatted(result);
  const Config& c = *result.config;
  EXPECT_EQ(c.listen, unixPath("run/proxy.sock"));
  EXPECT_EQ(c.admin.listen, tcp("::1", 9901));
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.log.format, LogFormat::Json);
  EXPECT_FALSE(c.log.access_log);
  EXPECT_EQ(c.limits.max_connections, 5u);
  EXPECT_EQ(c.limits.max_header_bytes, 1024u);
  EXPECT_EQ(c.limits.max_body_bytes, 10'000'000u);
  EXPECT_EQ(c.timeouts.header, 1500ms);
  EXPECT_EQ(c.timeouts.body, 250ms);
  EXPECT_EQ(c.timeouts.send, 3s);
  EXPECT_EQ(c.timeouts.idle, 2min);
  EXPECT_EQ(c.timeouts.drain, 0ms);
  const Upstream& u = c.upstreams.at(0);
  EXPECT_EQ(u.name, "my-app.v2_x");
  EXPECT_EQ(u.endpoints, (std::vector<Address>{tcp("api.internal.svc", 80), tcp("10.0.0.1", 8000),
                                               tcp("fe80::1%eth0", 81)}));
  EXPECT_EQ(u.balance, Balance::RoundRobin);
  EXPECT_EQ(u.read_timeout, 1500ms);
  EXPECT_EQ(u.max_idle_connections, 0u);
  const Route& re = c.routes.at(0);
  EXPECT_EQ(re.match.kind, MatchKind::Regex);
  EXPECT_EQ(re.match.pattern, "/items/[0-9]+");
  EXPECT_EQ(re.match.methods, (std::vector<std::string>{"GET", "POST", "PROPFIND"}));
  EXPECT_EQ(re.match.host, "api.example.com");
  EXPECT_EQ(re.limits.max_queue, 0u);
  EXPECT_EQ(re.limits.overflow_status, 429);
  EXPECT_EQ(re.buffer_limit, 512u);
  EXPECT_EQ(re.timeout, 250ms);
  EXPECT_EQ(c.routes.at(1).match.kind, MatchKind::Exact);
  EXPECT_EQ(c.routes.at(1).match.pattern, "/health");
}

// ---------------------------------------------------------------------------------------------
// Errors: syntax, files, format

TEST(ConfigErrorTest, FormatIsFileLineColMessage) {
  ConfigError e{"/etc/lg.yaml", 3, 7, "boom"};
  EXPECT_EQ(e.format(), "/etc/lg.yaml:3:7: boom");
}

TEST(ConfigErrorTest, YamlSyntaxErrorHasOneBasedPosition) {
  // yaml-cpp notices the unterminated flow sequence on the next line; the error points at the
  // bracket that is never closed.
  expectOneError("listen: \"127.0.0.1:8080\"\nroutes: [1\nupstreams: {}\n", 2, 9,
                 "YAML syntax error: this '[' is never closed");
  expectOneError("a:\n\tb: 1\n", 2, 1, "YAML syntax error: a tab character in the indentation");
}

// The input ends after a '\' inside a double-quoted string: yaml-cpp reads its EOF sentinel as
// the escaped character and points one past it; the error stays on the line (found by fuzzing).
TEST(ConfigErrorTest, BackslashAtTheEndOfTheInput) {
  expectOneError("listen: \"127.0.0.1:8080\n\\", 2, 2,
                 "the input ends inside a double-quoted string, after a '\\'");
}

TEST(ConfigErrorTest, SecondYamlDocumentIsAnError) {
  std::string yaml = std::string(kMinimal) + "---\nlisten: \"127.0.0.1:9\"\n";
  expectOneError(yaml, 9, 1, "one YAML document");
}

TEST(ConfigErrorTest, InvalidUtf8IsRefusedWithItsPosition) {
  // Would otherwise load, then make the JSON encoder behind GET /config throw.
  expectOneError("listen: \"127.0.0.1:8080\"\nlog: {level: \"inf\xFFo\"}\n", 2, 18,
                 "not valid UTF-8 (byte 0xFF)");
  expectOneError("a: \"\xC3\"\n", 1, 5, "not valid UTF-8 (byte 0xC3)");  // truncated sequence
  expectOneError("a: \"\xED\xA0\x80\"\n", 1, 5, "not valid UTF-8");      // a UTF-16 surrogate
  LoadResult ok = load(std::string(kMinimal) +
                       "pools: {cpu: {command: [w, \"{port}\"], env: {N: \"caf\xC3\xA9 "
                       "\xE2\x82\xAC \xF0\x9F\x98\x80\"}}}\n");
  ASSERT_TRUE(ok.ok()) << formatted(ok);
  EXPECT_EQ(ok.config->pools[0].env.at("N"), "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
}

TEST(ConfigErrorTest, TopLevelMustBeAMapping) {
  expectOneError("- a\n- b\n", 1, 1, "must be a mapping");
  expectOneError("just a string\n", 1, 1, "must be a mapping");
}

TEST(ConfigErrorTest, MissingFileIsOneErrorAtOneOne) {
  LoadResult result = loadConfigFile("/nonexistent/loopguard.yaml", Purpose::Proxy);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].format(),
            "/nonexistent/loopguard.yaml:1:1: cannot read file: No such file or directory");
  EXPECT_EQ(result.config, nullptr);
}

TEST(ConfigErrorTest, DirectoryIsNotAConfigFile) {
  LoadResult result = loadConfigFile("/tmp", Purpose::Proxy);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].format(), "/tmp:1:1: cannot read file: Is a directory");
}

TEST(ConfigErrorTest, LoadsFromFileAndReportsThatFileName) {
  char path[] = "/tmp/loopguard_config_test_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << kMinimal;
  }
  LoadResult ok = loadConfigFile(path, Purpose::Proxy);
  ASSERT_TRUE(ok.ok()) << formatted(ok);
  EXPECT_EQ(ok.config->source_path, path);
  {
    std::ofstream out(path);
    out << "listen: nope\n";
  }
  LoadResult bad = loadConfigFile(path, Purpose::Proxy);
  ASSERT_EQ(bad.errors.size(), 2u) << formatted(bad);
  EXPECT_EQ(bad.errors[0].format(), std::string(path) +
                                        ":1:1: missing required key \"routes\" (needed by "
                                        "loopguard proxy)");
  EXPECT_EQ(bad.errors[1].format(), std::string(path) +
                                        ":1:9: listen: bad address \"nope\": missing port "
                                        "(expected host:port, [v6]:port or unix:/path)");
  std::remove(path);
}

// ---------------------------------------------------------------------------------------------
// Errors: unknown keys at every level

struct PositionCase {
  const char* name;
  const char* yaml;
  int line;
  int column;
  const char* needle;
  Purpose purpose = Purpose::Proxy;
};

void PrintTo(const PositionCase& c, std::ostream* os) { *os << c.name; }

class ConfigUnknownKeyTest : public ::testing::TestWithParam<PositionCase> {};

TEST_P(ConfigUnknownKeyTest, ReportedAtTheKey) {
  const PositionCase& c = GetParam();
  expectOneError(c.yaml, c.line, c.column, c.needle, c.purpose);
}

constexpr const char* kRoutesTail =
    "upstreams:\n  app: {endpoints: [\"127.0.0.1:8000\"]}\n"
    "routes:\n  - {match: {prefix: /}, upstream: app}\n";

std::string withTail(std::string head) { return head + kRoutesTail; }

const std::string kTop = withTail("listen: \"127.0.0.1:8080\"\nlisen: x\n");
const std::string kAdmin =
    withTail("listen: \"127.0.0.1:8080\"\nadmin: {listen: \"127.0.0.1:1\", port: 1}\n");
const std::string kLog =
    withTail("listen: \"127.0.0.1:8080\"\nlog:\n  level: info\n  colour: true\n");
const std::string kLimits = withTail("listen: \"127.0.0.1:8080\"\nlimits: {max_conns: 1}\n");
const std::string kTimeouts = withTail("listen: \"127.0.0.1:8080\"\ntimeouts: {read: 1s}\n");
constexpr const char* kUpstream = R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app:
    endpoints: ["127.0.0.1:8000"]
    endpoint: ["127.0.0.1:8001"]
routes: [{match: {prefix: /}, upstream: app}]
)yaml";
constexpr const char* kPool = R"yaml(listen: "127.0.0.1:8080"
pools:
  cpu:
    command: [w, "{socket}"]
    worker: 2
routes: [{match: {prefix: /}, pool: cpu}]
)yaml";
constexpr const char* kReady = R"yaml(listen: "127.0.0.1:8080"
pools:
  cpu:
    command: [w, "{socket}"]
    ready: {path: /, interval: 1s}
routes: [{match: {prefix: /}, pool: cpu}]
)yaml";
constexpr const char* kBackoff = R"yaml(listen: "127.0.0.1:8080"
pools:
  cpu:
    command: [w, "{socket}"]
    restart_backoff:
      initial: 1s
      factor: 2
routes: [{match: {prefix: /}, pool: cpu}]
)yaml";
const std::string kRoute =
    "listen: \"127.0.0.1:8080\"\nupstreams:\n  app: {endpoints: [\"127.0.0.1:8000\"]}\n"
    "routes:\n  - match: {prefix: /}\n    upstream: app\n    retries: 3\n";
const std::string kMatch =
    "listen: \"127.0.0.1:8080\"\nupstreams:\n  app: {endpoints: [\"127.0.0.1:8000\"]}\n"
    "routes:\n  - match: {prefix: /, method: GET}\n    upstream: app\n";
const std::string kRouteLimits =
    "listen: \"127.0.0.1:8080\"\nupstreams:\n  app: {endpoints: [\"127.0.0.1:8000\"]}\n"
    "routes:\n  - match: {prefix: /}\n    upstream: app\n    limits:\n      max_inflight: 2\n";
constexpr const char* kOffload = R"yaml(pools:
  cpu: {command: [w, "{socket}"]}
offload:
  listen: "unix:/tmp/o.sock"
  pool: cpu
  workers: 3
)yaml";

INSTANTIATE_TEST_SUITE_P(
    ConfigEveryLevel, ConfigUnknownKeyTest,
    ::testing::Values(
        PositionCase{"top", kTop.c_str(), 2, 1,
                     "unknown key \"lisen\" in the top level (expected one of: listen, admin"},
        PositionCase{"admin", kAdmin.c_str(), 2, 32, "admin: unknown key \"port\" in admin"},
        PositionCase{"log", kLog.c_str(), 4, 3, "unknown key \"colour\" in log"},
        PositionCase{"limits", kLimits.c_str(), 2, 10, "unknown key \"max_conns\" in limits"},
        PositionCase{"timeouts", kTimeouts.c_str(), 2, 12, "unknown key \"read\" in timeouts"},
        PositionCase{"upstream", kUpstream, 5, 5,
                     "upstreams.app: unknown key \"endpoint\" in upstream \"app\" (expected one "
                     "of: endpoints, balance"},
        PositionCase{"pool", kPool, 5, 5, "did you mean \"workers\"?"},
        PositionCase{"ready", kReady, 5, 22, "unknown key \"interval\" in ready"},
        PositionCase{"backoff", kBackoff, 7, 7, "unknown key \"factor\" in restart_backoff"},
        PositionCase{"route", kRoute.c_str(), 7, 5,
                     "routes[0]: unknown key \"retries\" in route (expected one of: name, match, "
                     "upstream, pool, limits, buffer_request, buffer_limit, timeout, auto_offload)"},
        PositionCase{"match", kMatch.c_str(), 5, 24, "unknown key \"method\" in route match"},
        PositionCase{"route_limits", kRouteLimits.c_str(), 8, 7,
                     "routes[0].limits: unknown key \"max_inflight\" in route limits"},
        PositionCase{"offload", kOffload, 6, 3, "unknown key \"workers\" in offload",
                     Purpose::Offload}),
    [](const ::testing::TestParamInfo<PositionCase>& info) {
      return std::string(info.param.name);
    });

// ---------------------------------------------------------------------------------------------
// Errors: duplicates

TEST(ConfigErrorTest, DuplicateKeysAreReportedAtTheSecondOne) {
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
timeouts:
  header: 5s
  header: 6s
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                 4, 3, "timeouts: duplicate key \"header\" (first at line 3)");
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
routes: [{match: {prefix: /}, upstream: app, upstream: app}]
)yaml",
                 3, 46, "duplicate key \"upstream\"");
  expectOneError(std::string(kMinimal) + "listen: \"127.0.0.1:8081\"\n", 8, 1,
                 "duplicate key \"listen\" (first at line 1)");
}

TEST(ConfigErrorTest, DuplicateUpstreamPoolAndRouteNames) {
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app: {endpoints: ["127.0.0.1:8000"]}
  app: {endpoints: ["127.0.0.1:8001"]}
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                 4, 3, "duplicate upstream \"app\" (first at line 3)");
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
pools:
  cpu: {command: [w, "{socket}"]}
  cpu: {command: [w, "{socket}"]}
routes: [{match: {prefix: /}, pool: cpu}]
)yaml",
                 4, 3, "duplicate pool \"cpu\" (first at line 3)");
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
routes:
  - {name: api, match: {prefix: /a}, upstream: app}
  - {name: api, match: {prefix: /b}, upstream: app}
)yaml",
                 5, 12, "routes[1].name: duplicate route name \"api\" (first at line 4)");
}

TEST(ConfigErrorTest, DuplicateEnvKeysAndEndpoints) {
  expectSomeError(R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000", "127.0.0.1:8000"]}}
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                  "test.yaml:2:49: upstreams.app.endpoints[1]: duplicate endpoint");
  expectSomeError(R"yaml(listen: "127.0.0.1:8080"
pools: {cpu: {command: [w, "{socket}"], env: {A: "1", A: "2"}}}
routes: [{match: {prefix: /}, pool: cpu}]
)yaml",
                  "duplicate env variable \"A\"");
}

// ---------------------------------------------------------------------------------------------
// Errors: wrong types and bad values, each at the value

class ConfigValueErrorTest : public ::testing::TestWithParam<PositionCase> {};

TEST_P(ConfigValueErrorTest, ReportedAtTheValue) {
  const PositionCase& c = GetParam();
  expectOneError(c.yaml, c.line, c.column, c.needle);
}

// Builds a config whose line 2 is `line2`, on top of a valid proxy config.
std::string line2(const std::string& text) {
  return withTail("listen: \"127.0.0.1:8080\"\n" + text + "\n");
}

const std::string kStrings[] = {
    line2("log: {level: [info]}"),
    line2("log: {access_log: yes}"),
    line2("log: {access_log: \"true\"}"),
    line2("log: {level: verbose}"),
    line2("log: {format: xml}"),
    line2("limits: {max_connections: 0}"),
    line2("limits: {max_connections: ten}"),
    line2("limits: {max_connections: -5}"),
    line2("limits: {max_connections: \"5\"}"),
    line2("limits: {max_connections: 1.5}"),
    line2("limits: {max_header_bytes: 512}"),
    line2("limits: {max_body_bytes: 10 MiB}"),
    line2("limits: {max_body_bytes: 10mb}"),
    line2("limits: {max_body_bytes: {a: 1}}"),
    line2("timeouts: {header: 5 s}"),
    line2("timeouts: {header: 5}"),
    line2("timeouts: {idle: -1s}"),
    line2("timeouts: {drain: abc}"),
    line2("timeouts: {header: 0}"),
    line2("timeouts: {header:}"),
    line2("admin: {listen: \"127.0.0.1:70000\"}"),
    line2("admin: {listen: \"127.0.0.1\"}"),
    line2("admin: {listen: \"unix:\"}"),
    line2("admin: {listen: \"http://127.0.0.1:80\"}"),
    line2("admin: {listen: \"127.0.0.1:8080\"}"),
    line2("admin: [listen]"),
};

INSTANTIATE_TEST_SUITE_P(
    ConfigScalars, ConfigValueErrorTest,
    ::testing::Values(
        PositionCase{"map_for_string", kStrings[0].c_str(), 2, 14,
                     "log.level: expected a string, got a list"},
        PositionCase{"yes_is_not_bool", kStrings[1].c_str(), 2, 19,
                     "log.access_log: expected true or false, got \"yes\""},
        PositionCase{"quoted_bool", kStrings[2].c_str(), 2, 19, "expected true or false"},
        PositionCase{"log_level", kStrings[3].c_str(), 2, 14,
                     "unknown log level \"verbose\" (expected one of: trace, debug, info, warn, "
                     "error)"},
        PositionCase{"log_format", kStrings[4].c_str(), 2, 15,
                     "unknown log format \"xml\" (expected one of: text, json)"},
        PositionCase{"zero_connections", kStrings[5].c_str(), 2, 27,
                     "limits.max_connections: must be at least 1, got 0"},
        PositionCase{"word_for_int", kStrings[6].c_str(), 2, 27,
                     "expected a whole number, got \"ten\""},
        PositionCase{"negative_int", kStrings[7].c_str(), 2, 27, "must not be negative"},
        PositionCase{"quoted_int", kStrings[8].c_str(), 2, 27, "drop the quotes"},
        PositionCase{"fraction_int", kStrings[9].c_str(), 2, 27, "expected a whole number"},
        PositionCase{"small_header_limit", kStrings[10].c_str(), 2, 28,
                     "limits.max_header_bytes: must be at least 1024 bytes"},
        PositionCase{"size_with_space", kStrings[11].c_str(), 2, 26, "bad size \"10 MiB\""},
        PositionCase{"size_lower_unit", kStrings[12].c_str(), 2, 26, "unknown unit \"mb\""},
        PositionCase{"size_map", kStrings[13].c_str(), 2, 26, "expected a size"},
        PositionCase{"duration_space", kStrings[14].c_str(), 2, 20,
                     "timeouts.header: bad duration \"5 s\""},
        PositionCase{"duration_no_unit", kStrings[15].c_str(), 2, 20, "missing unit"},
        PositionCase{"duration_negative", kStrings[16].c_str(), 2, 18, "must not be negative"},
        PositionCase{"duration_word", kStrings[17].c_str(), 2, 19, "bad duration \"abc\""},
        PositionCase{"duration_zero", kStrings[18].c_str(), 2, 20,
                     "timeouts.header: must be greater than 0"},
        PositionCase{"duration_null", kStrings[19].c_str(), 2, 12,
                     "timeouts.header: expected a duration such as 250ms, 5s or 2m, got nothing"},
        PositionCase{"port_range", kStrings[20].c_str(), 2, 17,
                     "admin.listen: bad address \"127.0.0.1:70000\": port 70000 out of range"},
        PositionCase{"missing_port", kStrings[21].c_str(), 2, 17, "missing port"},
        PositionCase{"empty_unix", kStrings[22].c_str(), 2, 17, "empty unix socket path"},
        PositionCase{"url", kStrings[23].c_str(), 2, 17, "no scheme"},
        PositionCase{"same_as_listen", kStrings[24].c_str(), 2, 17,
                     "admin.listen: must differ from listen"},
        PositionCase{"section_type", kStrings[25].c_str(), 2, 8,
                     "admin: expected a mapping (key: value) for admin, got a list"}),
    [](const ::testing::TestParamInfo<PositionCase>& info) {
      return std::string(info.param.name);
    });

TEST(ConfigErrorTest, UpstreamValues) {
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app:
    endpoints: []
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                 4, 16, "upstreams.app.endpoints: must list at least one endpoint");
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app: {balance: round_robin}
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                 3, 3, "upstreams.app: missing required key \"endpoints\"");
  expectSomeError(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app: {endpoints: ["127.0.0.1:8000"], balance: random}
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                  "test.yaml:3:49: upstreams.app.balance: unknown balance \"random\" (expected one "
                  "of: least_request, round_robin)");
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app: {endpoints: ["127.0.0.1:0"]}
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                 3, 21, "port 0 cannot be connected to");
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app: {endpoints: "127.0.0.1:8000"}
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                 3, 20, "upstreams.app.endpoints: expected a list");
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  "my app": {endpoints: ["127.0.0.1:8000"]}
routes: [{match: {prefix: /}, upstream: "my app"}]
)yaml",
                 3, 3, "bad upstream name \"my app\"");
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app: {endpoints: ["127.0.0.1:8000"], connect_timeout: 0, max_idle_connections: 4}
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                 3, 57, "upstreams.app.connect_timeout: must be greater than 0");
  // A read_timeout of 0 would cut every streamed response at its first pause.
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app: {endpoints: ["127.0.0.1:8000"], read_timeout: 0}
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                 3, 54, "upstreams.app.read_timeout: must be greater than 0");
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app: {endpoints: ["127.0.0.1:8000"], read_timeout: 60}
routes: [{match: {prefix: /}, upstream: app}]
)yaml",
                 3, 54, "upstreams.app.read_timeout: bad duration \"60\": missing unit");
}

TEST(ConfigErrorTest, BodyTimeout) {
  expectOneError(std::string(kMinimal) + "timeouts: {body: 0}\n", 8, 18,
                 "timeouts.body: must be greater than 0");
  expectOneError(std::string(kMinimal) + "timeouts: {body: 5 s}\n", 8, 18,
                 "timeouts.body: bad duration \"5 s\"");
}

TEST(ConfigErrorTest, SendTimeout) {
  expectOneError(std::string(kMinimal) + "timeouts: {send: 0}\n", 8, 18,
                 "timeouts.send: must be greater than 0");
  expectOneError(std::string(kMinimal) + "timeouts: {send: forever}\n", 8, 18,
                 "timeouts.send: bad duration \"forever\"");
}

TEST(ConfigErrorTest, PoolValues) {
  auto pool = [](const std::string& body) {
    return "listen: \"127.0.0.1:8080\"\npools:\n  cpu:\n" + body +
           "routes: [{match: {prefix: /}, pool: cpu}]\n";
  };
  expectOneError(pool("    workers: 2\n"), 3, 3, "pools.cpu: missing required key \"command\"");
  expectOneError(pool("    command: []\n"), 4, 14, "pools.cpu.command: must not be empty");
  expectOneError(pool("    command: [\"\", \"{socket}\"]\n"), 4, 14, "program (first element)");
  expectOneError(pool("    command: [python3, app.py]\n"), 4, 14,
                 "must contain {socket} or {port}");
  expectOneError(pool("    command: [w, \"{socket}\", \"{port}\"]\n"), 4, 14, "not both");
  expectOneError(pool("    command: w {socket}\n"), 4, 14, "expected a list");
  expectOneError(pool("    command: [w, {socket: 1}]\n"), 4, 18,
                 "pools.cpu.command[1]: expected a string, got a mapping");
  expectOneError(pool("    command: [w, \"{port}\"]\n    workers: 0\n"), 5, 14,
                 "pools.cpu.workers: must be at least 1, got 0");
  expectOneError(pool("    command: [w, \"{port}\"]\n    workers: two\n"), 5, 14,
                 "expected a whole number");
  expectOneError(pool("    command: [w, \"{port}\"]\n    workers: 100000\n"), 5, 14,
                 "must be at most 4096");
  expectOneError(pool("    command: [w, \"{port}\"]\n    concurrency_per_worker: 0\n"), 5, 29,
                 "must be at least 1");
  expectOneError(pool("    command: [w, \"{port}\"]\n    ready: {timeout: 0}\n"), 5, 22,
                 "pools.cpu.ready.timeout: must be greater than 0");
  expectOneError(pool("    command: [w, \"{port}\"]\n    ready: {path: health}\n"), 5, 19,
                 "must start with \"/\"");
  expectOneError(
      pool("    command: [w, \"{port}\"]\n    restart_backoff: {initial: 5s, max: 1s}\n"), 5, 22,
      "pools.cpu.restart_backoff: initial (5s) must not be greater than max (1s)");
  expectOneError(pool("    command: [w, \"{port}\"]\n    request_timeout: 0\n"), 5, 22,
                 "must be greater than 0");
  expectOneError(pool("    command: [w, \"{port}\"]\n    max_rss: 1.5GiB\n"), 5, 14,
                 "fractions are not allowed");
  expectOneError(pool("    command: [w, \"{port}\"]\n    env: {A: [1]}\n"), 5, 14,
                 "pools.cpu.env.A: expected a string, got a list");
  expectOneError(pool("    command: [w, \"{port}\"]\n    workdir: \"\"\n"), 5, 14,
                 "pools.cpu.workdir: must not be empty");
  expectOneError(pool("    command: [w, \"{port}\"]\n    on_slow: [\"\"]\n"), 5, 14,
                 "program (first element)");
  // Numbers in env are fine: they are strings to the process anyway.
  LoadResult ok = load(pool("    command: [w, \"{port}\"]\n    env: {A: 1, B: true}\n"));
  ASSERT_TRUE(ok.ok()) << formatted(ok);
  EXPECT_EQ(ok.config->pools[0].env.at("A"), "1");
  EXPECT_EQ(ok.config->pools[0].env.at("B"), "true");
}

TEST(ConfigErrorTest, RouteTargets) {
  constexpr const char* kHead = R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
pools: {cpu: {command: [w, "{socket}"]}}
routes:
)yaml";
  auto route = [&](const std::string& text) { return std::string(kHead) + text; };
  expectOneError(route("  - {match: {prefix: /}, upstream: ap}\n"), 5, 36,
                 "routes[0].upstream: no upstream named \"ap\" (defined: app)");
  expectOneError(route("  - {match: {prefix: /}, pool: gpu}\n"), 5, 32,
                 "routes[0].pool: no pool named \"gpu\" (defined: cpu)");
  expectOneError(route("  - {match: {prefix: /}, upstream: cpu}\n"), 5, 36, "no upstream named");
  expectOneError(route("  - match: {prefix: /}\n    upstream: app\n    pool: cpu\n"), 7, 5,
                 "routes[0]: has both upstream and pool; use exactly one");
  expectOneError(route("  - match: {prefix: /}\n    pool: cpu\n    upstream: app\n"), 7, 5,
                 "has both upstream and pool");
  expectOneError(route("  - match: {prefix: /}\n    timeout: 1s\n"), 5, 5,
                 "routes[0]: needs a target: exactly one of upstream or pool");
  expectOneError(route("  - {upstream: app}\n"), 5, 5, "routes[0]: missing required key \"match\"");
  expectOneError(route("  - upstream: app\n  - {match: {prefix: /}, upstream: app}\n"), 5, 5,
                 "missing required key \"match\"");
  expectOneError(route("  - \"/api\"\n"), 5, 5, "routes[0]: expected a mapping");
  expectOneError(R"yaml(listen: "127.0.0.1:8080"
routes: {match: {prefix: /}}
)yaml",
                 2, 9, "routes: expected a list");
}

TEST(ConfigErrorTest, RouteMatchAndLimits) {
  constexpr const char* kHead = R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
routes:
)yaml";
  auto route = [&](const std::string& match, const std::string& extra = "") {
    return std::string(kHead) + "  - match: " + match + "\n    upstream: app\n" + extra;
  };
  expectOneError(route("{methods: [GET]}"), 4, 12,
                 "routes[0].match: needs exactly one of prefix, exact or regex");
  expectOneError(route("{}"), 4, 12, "needs exactly one of prefix, exact or regex");
  expectOneError(route("{prefix: /a, exact: /b}"), 4, 25,
                 "routes[0].match: has both prefix and exact");
  LoadResult three = load(route("{prefix: /a, exact: /b, regex: /c}"));
  ASSERT_EQ(three.errors.size(), 2u) << formatted(three);
  EXPECT_EQ(three.errors[1].format(),
            "test.yaml:4:36: routes[0].match: has both prefix and regex; use exactly one of "
            "prefix, exact or regex");
  expectOneError(route("{prefix: api}"), 4, 21, "routes[0].match.prefix: must start with \"/\"");
  expectOneError(route("{exact: \"\"}"), 4, 20, "must not be empty");
  expectOneError(route("{regex: \"/items/(\"}"), 4, 20, "routes[0].match.regex: bad regex");
  expectOneError(route("{regex: \"(?<=a)b\"}"), 4, 20, "bad regex");
  expectOneError(route("{prefix: /, methods: [GET, \"BAD METHOD\"]}"), 4, 39,
                 "routes[0].match.methods[1]: bad HTTP method \"BAD METHOD\"");
  expectOneError(route("{prefix: /, methods: []}"), 4, 33, "must not be empty (omit it");
  expectOneError(route("{prefix: /, methods: GET}"), 4, 33, "expected a list");
  expectOneError(route("{prefix: /, host: \"a b\"}"), 4, 30, "bad host");
  expectOneError(route("{prefix: /, host: \"api.example.com:8080\"}"), 4, 30,
                 "must not include a port");
  EXPECT_TRUE(load(route("{prefix: /, host: \"[::1]\"}")).ok());
  expectOneError(route("{prefix: /}", "    limits: {max_in_flight: 0}\n"), 6, 29,
                 "routes[0].limits.max_in_flight: must be at least 1");
  expectOneError(route("{prefix: /}", "    limits: {overflow_status: 500}\n"), 6, 31,
                 "routes[0].limits.overflow_status: must be 503 or 429, got 500");
  expectOneError(route("{prefix: /}", "    limits: {queue_timeout: 0}\n"), 6, 29,
                 "must be greater than 0");
  expectOneError(route("{prefix: /}", "    limits: 5\n"), 6, 13, "expected a mapping");
  expectOneError(route("{prefix: /}", "    buffer_limit: 0\n"), 6, 19, "must be at least 1 bytes");
  expectOneError(route("{prefix: /}", "    buffer_request: 1\n"), 6, 21, "expected true or false");
  expectOneError(route("{prefix: /}", "    timeout: 30\n"), 6, 14, "missing unit");
  expectOneError(route("{prefix: /}", "    name: \"has space\"\n"), 6, 11, "bad route name");
}

TEST(ConfigErrorTest, OffloadSection) {
  constexpr const char* kPools = "pools: {cpu: {command: [w, \"{socket}\"]}}\n";
  expectOneError(std::string(kPools) + "offload: {listen: \"unix:/tmp/o.sock\", pool: gpu}\n", 2,
                 45, "offload.pool: no pool named \"gpu\" (defined: cpu)", Purpose::Offload);
  expectOneError(std::string(kPools) + "offload: {pool: cpu}\n", 2, 10,
                 "offload: missing required key \"listen\"", Purpose::Offload);
  expectOneError(std::string(kPools) + "offload: {listen: \"unix:/tmp/o.sock\"}\n", 2, 10,
                 "offload: missing required key \"pool\"", Purpose::Offload);
  expectOneError(std::string(kPools) + "offload: {listen: \"localhost\", pool: cpu}\n", 2, 19,
                 "offload.listen: bad address \"localhost\": missing port", Purpose::Offload);
  expectOneError("offload: {listen: \"unix:/tmp/o.sock\", pool: cpu}\n", 1, 45,
                 "no pool named \"cpu\" (none defined)", Purpose::Offload);
  // A proxy config with a broken offload section is still broken.
  expectOneError(std::string(kMinimal) + "offload: {listen: \"unix:/tmp/o.sock\", pool: cpu}\n", 8,
                 45, "no pool named \"cpu\"", Purpose::Proxy);
}

// ---------------------------------------------------------------------------------------------
// Errors: many at once, in file order

TEST(ConfigErrorTest, EveryErrorIsReportedInFileOrder) {
  LoadResult result = load(R"yaml(routes:
  - {name: b, match: {prefix: nope}, upstream: missing}
  - {name: b, match: {regex: "("}, pool: cpu}
upstreams:
  app: {endpoints: ["127.0.0.1:99999"], balance: random}
listen: "0.0.0.0"
timeouts: {header: 5, idle: 1x}
pools:
  cpu: {command: [w], workers: 0}
bogus: 1
)yaml");
  ASSERT_EQ(result.config, nullptr);
  std::vector<std::string> expected = {
      "test.yaml:2:31: routes[0].match.prefix: must start with \"/\", got \"nope\"",
      "test.yaml:2:48: routes[0].upstream: no upstream named \"missing\" (defined: app)",
      "test.yaml:3:12: routes[1].name: duplicate route name \"b\" (first at line 2)",
      "test.yaml:3:30: routes[1].match.regex: bad regex \"(\": missing ): (",
      "test.yaml:5:21: upstreams.app.endpoints[0]: bad address \"127.0.0.1:99999\": port 99999 "
      "out of range (0-65535)",
      "test.yaml:5:50: upstreams.app.balance: unknown balance \"random\" (expected one of: "
      "least_request, round_robin)",
      "test.yaml:6:9: listen: bad address \"0.0.0.0\": missing port (expected host:port, "
      "[v6]:port or unix:/path)",
      "test.yaml:7:20: timeouts.header: bad duration \"5\": missing unit (ms, s, m or h), e.g. 5s",
      "test.yaml:7:29: timeouts.idle: bad duration \"1x\": unknown unit \"x\" (expected ms, s, m "
      "or h)",
      "test.yaml:9:18: pools.cpu.command: must contain {socket} or {port} (here or in env, e.g. "
      "env: {PORT: \"{port}\"}), so each worker listens where loopguard connects",
      "test.yaml:9:32: pools.cpu.workers: must be at least 1, got 0",
      "test.yaml:10:1: unknown key \"bogus\" in the top level (expected one of: listen, admin, "
      "log, "
      "limits, timeouts, upstreams, pools, routes, offload, advice)",
  };
  std::vector<std::string> actual;
  for (const ConfigError& e : result.errors) actual.push_back(e.format());
  EXPECT_EQ(actual, expected);
}

TEST(ConfigTest, AdaptiveLimitsAndQueueOrder) {
  LoadResult result = load(R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
routes:
  - name: api
    match: {prefix: /api/}
    upstream: app
    limits: {max_in_flight: auto, max_in_flight_min: 2, max_in_flight_max: 64,
             queue_order: adaptive, max_queue: 10000, queue_timeout: 30s}
  - name: fixed
    match: {prefix: /}
    upstream: app
    limits: {max_in_flight: 8, queue_order: lifo}
)yaml");
  ASSERT_TRUE(result.ok()) << formatted(result);
  const RouteLimits& api = result.config->routes[0].limits;
  EXPECT_TRUE(api.max_in_flight_auto);
  EXPECT_FALSE(api.max_in_flight.has_value());
  EXPECT_EQ(api.max_in_flight_min, 2u);
  EXPECT_EQ(api.max_in_flight_max, 64u);
  EXPECT_EQ(api.queue_order, QueueOrder::Adaptive);
  const RouteLimits& fixed = result.config->routes[1].limits;
  EXPECT_FALSE(fixed.max_in_flight_auto);
  EXPECT_EQ(fixed.max_in_flight, 8u);
  EXPECT_EQ(fixed.queue_order, QueueOrder::Lifo);
  EXPECT_EQ(RouteLimits{}.queue_order, QueueOrder::Fifo);
  EXPECT_EQ(RouteLimits{}.max_in_flight_min, 1u);
  EXPECT_EQ(RouteLimits{}.max_in_flight_max, 1000u);

  nlohmann::json j = configToJson(*result.config);
  EXPECT_EQ(j["routes"][0]["limits"]["max_in_flight"], "auto");
  EXPECT_EQ(j["routes"][0]["limits"]["max_in_flight_min"], 2);
  EXPECT_EQ(j["routes"][0]["limits"]["max_in_flight_max"], 64);
  EXPECT_EQ(j["routes"][0]["limits"]["queue_order"], "adaptive");
  EXPECT_EQ(j["routes"][1]["limits"]["max_in_flight"], 8);
  EXPECT_EQ(j["routes"][1]["limits"]["queue_order"], "lifo");
  EXPECT_FALSE(j["routes"][1]["limits"].contains("max_in_flight_min"));
  LoadResult again = loadConfigString(j.dump(), "test.yaml", Purpose::Proxy);
  ASSERT_TRUE(again.ok()) << formatted(again);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(again.config->routes[i].limits, result.config->routes[i].limits);  // not the pos
  }
}

TEST(ConfigErrorTest, AdaptiveLimitsAndQueueOrder) {
  constexpr const char* kHead = R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
routes:
  - match: {prefix: /}
    upstream: app
)yaml";
  auto limits = [&](const std::string& text) { return std::string(kHead) + text + "\n"; };
  expectOneError(limits("    limits: {max_in_flight: autox}"), 6, 29,
                 "routes[0].limits.max_in_flight: expected a whole number or auto, got \"autox\"");
  expectOneError(limits("    limits: {max_in_flight: 2.5}"), 6, 29,
                 "expected a whole number or auto");
  expectOneError(limits("    limits: {max_in_flight: auto, max_in_flight_min: 8, max_in_flight_max: 4}"),
                 6, 76, "max_in_flight_min (8) must not exceed max_in_flight_max (4)");
  expectOneError(limits("    limits: {max_in_flight: auto, max_in_flight_min: 2000}"), 6, 54,
                 "max_in_flight_min (2000) must not exceed max_in_flight_max (1000)");
  expectOneError(limits("    limits: {max_in_flight: auto, max_in_flight_min: 0}"), 6, 54,
                 "routes[0].limits.max_in_flight_min: must be at least 1");
  expectOneError(limits("    limits: {max_in_flight: 4, max_in_flight_min: 2}"), 6, 51,
                 "routes[0].limits.max_in_flight_min: applies only to max_in_flight: auto");
  expectOneError(limits("    limits: {queue_order: stack}"), 6, 27,
                 "routes[0].limits.queue_order: unknown queue_order \"stack\" (expected one of: "
                 "fifo, lifo, adaptive)");
  EXPECT_TRUE(load(limits("    limits: {max_in_flight: \"auto\"}")).ok());
}

TEST(ConfigErrorTest, BrokenUpstreamDoesNotAlsoMakeRoutesDangle) {
  LoadResult result = load(R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app: {endpoints: ["nope"]}
routes: [{match: {prefix: /}, upstream: app}]
)yaml");
  ASSERT_EQ(result.errors.size(), 1u) << formatted(result);
  EXPECT_EQ(result.errors[0].line, 3);
}

// ---------------------------------------------------------------------------------------------
// Purpose rules

TEST(ConfigPurposeTest, ProxyNeedsListenAndRoutes) {
  expectOneError(
      "upstreams: {app: {endpoints: [\"127.0.0.1:8000\"]}}\n"
      "routes: [{match: {prefix: /}, upstream: app}]\n",
      1, 1, "missing required key \"listen\" (needed by loopguard proxy)");
  expectOneError("listen: \"127.0.0.1:8080\"\n", 1, 1,
                 "missing required key \"routes\" (needed by loopguard proxy)");
  expectOneError("listen: \"127.0.0.1:8080\"\nroutes: []\n", 2, 9,
                 "routes: must list at least one route");
  expectOneError("listen: \"127.0.0.1:8080\"\nroutes:\n", 2, 1,
                 "routes: must list at least one route");
  LoadResult empty = load("");
  ASSERT_EQ(empty.errors.size(), 2u) << formatted(empty);
  EXPECT_EQ(empty.errors[0].format(),
            "test.yaml:1:1: missing required key \"listen\" (needed by loopguard proxy)");
  EXPECT_EQ(empty.errors[1].format(),
            "test.yaml:1:1: missing required key \"routes\" (needed by loopguard proxy)");
  EXPECT_EQ(load("# nothing but a comment\n").errors.size(), 2u);
}

TEST(ConfigPurposeTest, ProxyWithBrokenListenReportsOnlyTheBadValue) {
  expectOneError(std::string(kMinimal).replace(9, 14, "127.0.0.1:x"), 1, 9, "bad port");
}

TEST(ConfigPurposeTest, OffloadNeedsOnlyOffload) {
  constexpr const char* kSidecar = R"yaml(pools:
  cpu: {command: [w, "{socket}"]}
offload: {listen: "127.0.0.1:7000", pool: cpu}
)yaml";
  LoadResult result = load(kSidecar, Purpose::Offload);
  ASSERT_TRUE(result.ok()) << formatted(result);
  EXPECT_FALSE(result.config->listen.has_value());
  EXPECT_TRUE(result.config->routes.empty());
  EXPECT_EQ(result.config->offload->listen, tcp("127.0.0.1", 7000));
  expectOneError(kMinimal, 1, 1, "missing required key \"offload\" (needed by loopguard offload)",
                 Purpose::Offload);
  expectSomeError(kSidecar, "missing required key \"listen\"", Purpose::Proxy);
  // routes: [] is fine for the sidecar.
  EXPECT_TRUE(load(std::string(kSidecar) + "routes: []\n", Purpose::Offload).ok());
}

TEST(ConfigPurposeTest, AnyAcceptsProxyOrOffloadConfigs) {
  EXPECT_TRUE(load(kMinimal, Purpose::Any).ok());
  EXPECT_TRUE(load("pools: {cpu: {command: [w, \"{socket}\"]}}\n"
                   "offload: {listen: \"unix:/tmp/o.sock\", pool: cpu}\n",
                   Purpose::Any)
                  .ok());
  expectOneError(
      "log: {level: info}\nroutes: [{match: {prefix: /}, upstream: app}]\n"
      "upstreams: {app: {endpoints: [\"127.0.0.1:8000\"]}}\n",
      1, 1,
      "missing required key \"listen\" (needed by loopguard proxy; loopguard "
      "offload needs offload)",
      Purpose::Any);
  // Port 0 means "any free port", so two such listeners never collide.
  EXPECT_TRUE(load(std::string(kMinimal).replace(9, 14, "127.0.0.1:0") +
                   "admin: {listen: \"127.0.0.1:0\"}\n")
                  .ok());
  // Listeners must not collide.
  expectOneError(
      "pools: {cpu: {command: [w, \"{socket}\"]}}\n"
      "admin: {listen: \"127.0.0.1:7000\"}\n"
      "offload: {listen: \"127.0.0.1:7000\", pool: cpu}\n",
      3, 19, "offload.listen: must differ from admin.listen", Purpose::Any);
}

// ---------------------------------------------------------------------------------------------
// Scalar grammars

TEST(ConfigParseDurationTest, Accepts) {
  struct Case {
    const char* text;
    Duration want;
  };
  for (const Case& c : std::vector<Case>{{"0", 0ms},
                                         {"0s", 0ms},
                                         {"0ms", 0ms},
                                         {"250ms", 250ms},
                                         {"5s", 5s},
                                         {"2m", 2min},
                                         {"1h", 1h},
                                         {"1.5s", 1500ms},
                                         {"0.25s", 250ms},
                                         {"0.5m", 30s},
                                         {"1.000s", 1s},
                                         {"007s", 7s},
                                         {"8760h", 8760h}}) {
    Duration got{-1};
    EXPECT_TRUE(parseDuration(c.text, got)) << c.text;
    EXPECT_EQ(got, c.want) << c.text;
  }
}

TEST(ConfigParseDurationTest, Rejects) {
  for (const char* text : {"",        "5",     "5 s", " 5s",   "5s ",
                           "-1s",     "+1s",   "abc", "s",     "1.5ms",
                           "0.0001s", ".5s",   "5.s", "1m30s", "5S",
                           "5sec",    "5us",   "1d",  "8761h", "99999999999999999999999h",
                           "1e3ms",   "0x10s", "00"}) {
    Duration got{42};
    EXPECT_FALSE(parseDuration(text, got)) << '"' << text << '"';
    EXPECT_EQ(got, Duration{42}) << "untouched on failure: " << text;
  }
}

TEST(ConfigParseDurationTest, FormatRoundTrips) {
  EXPECT_EQ(formatDuration(0ms), "0s");
  EXPECT_EQ(formatDuration(250ms), "250ms");
  EXPECT_EQ(formatDuration(1500ms), "1500ms");
  EXPECT_EQ(formatDuration(5s), "5s");
  EXPECT_EQ(formatDuration(90s), "90s");
  EXPECT_EQ(formatDuration(2min), "2m");
  EXPECT_EQ(formatDuration(1h), "1h");
  for (Duration d :
       std::vector<Duration>{0ms, 1ms, 999ms, 1001ms, 60s, 61s, 3600s, 3601s, kMaxDuration}) {
    Duration back{-1};
    ASSERT_TRUE(parseDuration(formatDuration(d), back)) << formatDuration(d);
    EXPECT_EQ(back, d);
  }
}

TEST(ConfigParseSizeTest, Accepts) {
  struct Case {
    const char* text;
    uint64_t want;
  };
  for (const Case& c : std::vector<Case>{{"0", 0},
                                         {"512", 512},
                                         {"512B", 512},
                                         {"64KiB", 64 * 1024},
                                         {"10MiB", 10 * 1024 * 1024},
                                         {"1GiB", 1024ULL * 1024 * 1024},
                                         {"2TiB", 2ULL << 40},
                                         {"1KB", 1000},
                                         {"1kB", 1000},
                                         {"5MB", 5'000'000},
                                         {"3GB", 3'000'000'000ULL},
                                         {"1TB", 1'000'000'000'000ULL},
                                         {"18446744073709551615", UINT64_MAX}}) {
    uint64_t got = 7;
    EXPECT_TRUE(parseSize(c.text, got)) << c.text;
    EXPECT_EQ(got, c.want) << c.text;
  }
}

TEST(ConfigParseSizeTest, Rejects) {
  for (const char* text :
       {"", "-1", "+1", "1.5MiB", "64 KiB", "64kib", "64k", "64K", "10m", "1M", "KiB", "0x10",
        "1e6", "18446744073709551616", "17179869184GiB", "64KiBs", " 1"}) {
    uint64_t got = 7;
    EXPECT_FALSE(parseSize(text, got)) << '"' << text << '"';
    EXPECT_EQ(got, 7u);
  }
}

TEST(ConfigParseAddressTest, Accepts) {
  struct Case {
    const char* text;
    Address want;
  };
  for (const Case& c : std::vector<Case>{
           {"0.0.0.0:8080", tcp("0.0.0.0", 8080)},
           {"127.0.0.1:0", tcp("127.0.0.1", 0)},  // listeners may ask for an ephemeral port
           {"localhost:65535", tcp("localhost", 65535)},
           {"api.example.com.:80", tcp("api.example.com.", 80)},
           {"my_svc-1.ns.svc.cluster.local:8000", tcp("my_svc-1.ns.svc.cluster.local", 8000)},
           {"[::1]:9901", tcp("::1", 9901)},
           {"[::]:80", tcp("::", 80)},
           {"[2001:db8::1]:443", tcp("2001:db8::1", 443)},
           {"[fe80::1%eth0]:80", tcp("fe80::1%eth0", 80)},
           {"unix:/var/run/app.sock", unixPath("/var/run/app.sock")},
           {"unix:relative/app.sock", unixPath("relative/app.sock")},
       }) {
    Address got;
    std::string why;
    EXPECT_TRUE(parseAddress(c.text, got, why)) << c.text << ": " << why;
    EXPECT_EQ(got, c.want) << c.text;
    EXPECT_EQ(got.toString(), c.text) << "toString spells it as written";
  }
}

TEST(ConfigParseAddressTest, RejectsWithAReason) {
  struct Case {
    const char* text;
    const char* why;
  };
  for (const Case& c : std::vector<Case>{
           {"", "empty address"},
           {"127.0.0.1", "missing port"},
           {"127.0.0.1:", "missing port"},
           {"127.0.0.1:65536", "out of range"},
           {"127.0.0.1:99999999999999999999", "out of range"},
           {"127.0.0.1:-1", "bad port"},
           {"127.0.0.1:80a", "bad port"},
           {"127.0.0.1: 80", "bad port"},
           {":8080", "missing host"},
           {"::1:80", "needs brackets"},
           {"[::1]", "missing port"},
           {"[::1]80", "expected ':'"},
           {"[::1:80", "missing ']'"},
           {"[]:80", "bad IPv6"},
           {"[1.2.3.4]:80", "bad IPv6"},
           {"[fe80::1%]:80", "bad IPv6"},
           {"300.1.1.1:80", "bad IPv4"},
           {"1.2.3:80", "bad IPv4"},
           {"bad_host!:80", "bad host name"},
           {"-lead.example:80", "bad host name"},
           {"a..b:80", "bad host name"},
           {"http://localhost:80", "no scheme"},
           {"unix:", "empty unix socket path"},
           {"*:80", "bad host name"},
       }) {
    Address got;
    std::string why;
    EXPECT_FALSE(parseAddress(c.text, got, why)) << c.text;
    EXPECT_NE(why.find(c.why), std::string::npos) << c.text << " -> " << why;
  }
  Address got;
  std::string why;
  EXPECT_FALSE(parseAddress("unix:/" + std::string(200, 'a'), got, why));
  EXPECT_NE(why.find("too long"), std::string::npos) << why;
}

TEST(ConfigParseNamesTest, NamesAndMethods) {
  EXPECT_TRUE(isValidName("app"));
  EXPECT_TRUE(isValidName("My-app_2.v1"));
  EXPECT_FALSE(isValidName(""));
  EXPECT_FALSE(isValidName("my app"));
  EXPECT_FALSE(isValidName("a/b"));
  EXPECT_TRUE(isHttpToken("GET"));
  EXPECT_TRUE(isHttpToken("M-SEARCH"));
  EXPECT_FALSE(isHttpToken(""));
  EXPECT_FALSE(isHttpToken("GE T"));
  EXPECT_FALSE(isHttpToken("GET/"));
}

// ---------------------------------------------------------------------------------------------
// JSON view

TEST(ConfigToJsonTest, SpecExampleValues) {
  LoadResult result = load(kSpecExample);
  ASSERT_TRUE(result.ok()) << formatted(result);
  nlohmann::json j = configToJson(*result.config);
  EXPECT_EQ(j["listen"], "0.0.0.0:8080");
  EXPECT_EQ(j["admin"]["listen"], "127.0.0.1:9901");
  EXPECT_EQ(j["log"]["format"], "text");
  EXPECT_EQ(j["log"]["access_log"], true);
  EXPECT_EQ(j["limits"]["max_header_bytes"], 65536);
  EXPECT_EQ(j["timeouts"]["header"], "10s");
  EXPECT_EQ(j["timeouts"]["send"], "1m");
  EXPECT_EQ(j["upstreams"]["app"]["endpoints"], nlohmann::json::array({"127.0.0.1:8000"}));
  EXPECT_EQ(j["upstreams"]["app"]["balance"], "least_request");
  EXPECT_EQ(j["upstreams"]["app"]["idle_timeout"], "4s");
  EXPECT_EQ(j["pools"]["cpu"]["restart_backoff"]["initial"], "100ms");
  EXPECT_EQ(j["pools"]["cpu"]["restart_backoff"]["max"], "10s");
  EXPECT_EQ(j["pools"]["cpu"]["ready"]["path"], "/");
  EXPECT_EQ(j["pools"]["cpu"]["env"]["PYTHONUNBUFFERED"], "1");
  EXPECT_EQ(j["pools"]["cpu"]["slow_after"], "0s");
  EXPECT_EQ(j["routes"][0]["name"], "hash");
  EXPECT_EQ(j["routes"][0]["pool"], "cpu");
  EXPECT_FALSE(j["routes"][0].contains("upstream"));
  EXPECT_EQ(j["routes"][0]["match"]["prefix"], "/cpu/");
  EXPECT_EQ(j["routes"][0]["match"]["methods"], nlohmann::json::array({"GET", "POST"}));
  EXPECT_EQ(j["routes"][0]["buffer_limit"], 16 * 1024 * 1024);
  EXPECT_EQ(j["routes"][0]["limits"]["max_in_flight"], 2);
  EXPECT_EQ(j["routes"][1]["upstream"], "app");
  EXPECT_EQ(j["routes"][1]["buffer_request"], false);
  EXPECT_EQ(j["offload"]["listen"], "unix:/var/run/loopguard/offload.sock");
  EXPECT_FALSE(j.contains("source_path"));
}

TEST(ConfigToJsonTest, UnsetOptionalsAreNull) {
  LoadResult result = load(kMinimal);
  ASSERT_TRUE(result.ok()) << formatted(result);
  nlohmann::json j = configToJson(*result.config);
  EXPECT_TRUE(j["admin"]["listen"].is_null());
  EXPECT_TRUE(j["offload"].is_null());
  EXPECT_TRUE(j["routes"][0]["limits"]["max_in_flight"].is_null());
  EXPECT_EQ(j["routes"][0]["timeout"], "0s");
  EXPECT_EQ(j["routes"][0]["name"], "routes[0]");
}

// JSON is YAML: the effective config loads back to the same Config.
TEST(ConfigToJsonTest, OutputLoadsBackToTheSameConfig) {
  for (std::string_view yaml : {kSpecExample, kMinimal}) {
    LoadResult first = load(yaml, Purpose::Any);
    ASSERT_TRUE(first.ok()) << formatted(first);
    std::string json = configToJson(*first.config).dump(2);
    LoadResult second = loadConfigString(json, "test.yaml", Purpose::Any);
    ASSERT_TRUE(second.ok()) << json << "\n" << formatted(second);
    const Config& a = *first.config;
    const Config& b = *second.config;
    EXPECT_EQ(a.listen, b.listen);
    EXPECT_EQ(a.admin, b.admin);
    EXPECT_EQ(a.log, b.log);
    EXPECT_EQ(a.limits, b.limits);
    EXPECT_EQ(a.timeouts, b.timeouts);
    EXPECT_EQ(a.offload, b.offload);
    // Positions differ (different text); compare everything else.
    ASSERT_EQ(a.upstreams.size(), b.upstreams.size());
    ASSERT_EQ(a.pools.size(), b.pools.size());
    ASSERT_EQ(a.routes.size(), b.routes.size());
    for (size_t i = 0; i < a.upstreams.size(); ++i) {
      Upstream u = b.upstreams[i];
      u.pos = a.upstreams[i].pos;
      EXPECT_EQ(a.upstreams[i], u);
    }
    for (size_t i = 0; i < a.pools.size(); ++i) {
      Pool p = b.pools[i];
      p.pos = a.pools[i].pos;
      EXPECT_EQ(a.pools[i], p);
    }
    for (size_t i = 0; i < a.routes.size(); ++i) {
      Route r = b.routes[i];
      r.pos = a.routes[i].pos;
      EXPECT_EQ(a.routes[i], r);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Worker addresses in env (Node's PORT, ...)

std::string poolConfig(const std::string& pool_body) {
  return "listen: \"127.0.0.1:8080\"\npools:\n  w:\n" + pool_body +
         "routes: [{name: r, match: {prefix: /}, pool: w}]\n";
}

TEST(ConfigPoolAddressTest, PortOrSocketMayComeThroughEnv) {
  LoadResult port = load(poolConfig("    command: [node, app.js]\n    env: {PORT: \"{port}\"}\n"));
  ASSERT_TRUE(port.ok()) << formatted(port);
  EXPECT_TRUE(port.config->pools[0].listensOnPort());
  LoadResult socket =
      load(poolConfig("    command: [node, app.js]\n    env: {SOCKET_PATH: \"{socket}\"}\n"));
  ASSERT_TRUE(socket.ok()) << formatted(socket);
  EXPECT_FALSE(socket.config->pools[0].listensOnPort());
  LoadResult in_command = load(poolConfig("    command: [w, --port, \"{port}\"]\n"));
  ASSERT_TRUE(in_command.ok()) << formatted(in_command);
  EXPECT_TRUE(in_command.config->pools[0].listensOnPort());
  LoadResult go = load(poolConfig("    command: [./server]\n    env: {ADDR: \"127.0.0.1:{port}\"}\n"));
  ASSERT_TRUE(go.ok()) << formatted(go);
}

TEST(ConfigPoolAddressTest, NeitherOrBothIsAnErrorAtTheCommand) {
  expectOneError(poolConfig("    command: [node, app.js]\n    env: {PORT: \"8000\"}\n"), 4, 14,
                 "must contain {socket} or {port} (here or in env");
  expectOneError(poolConfig("    command: [w, \"{socket}\"]\n    env: {PORT: \"{port}\"}\n"), 4, 14,
                 "use one of {socket} or {port}");
}

// ---------------------------------------------------------------------------------------------
// admin.token_file, offload queue

TEST(ConfigAdminTest, TokenFileIsAPath) {
  std::string yaml = std::string(kMinimal) + "admin: {listen: \"127.0.0.1:9901\", token_file: /run/secrets/admin}\n";
  LoadResult r = load(yaml);
  ASSERT_TRUE(r.ok()) << formatted(r);
  EXPECT_EQ(r.config->admin.token_file, "/run/secrets/admin");
  EXPECT_FALSE(load(kMinimal).config->admin.token_file);
  expectOneError(std::string(kMinimal) + "admin: {token_file: \"\"}\n", 8, 21,
                 "admin.token_file: must not be empty");
}

TEST(ConfigOffloadTest, QueueKeys) {
  constexpr std::string_view kOffload = R"yaml(pools:
  cpu: {command: [w, "{socket}"], request_timeout: 9s}
offload:
  listen: "127.0.0.1:9000"
  pool: cpu
)yaml";
  LoadResult plain = load(kOffload, Purpose::Offload);
  ASSERT_TRUE(plain.ok()) << formatted(plain);
  EXPECT_EQ(plain.config->offload->max_queue, 1024u);
  EXPECT_FALSE(plain.config->offload->queue_timeout);
  LoadResult set =
      load(std::string(kOffload) + "  max_queue: 0\n  queue_timeout: 250ms\n", Purpose::Offload);
  ASSERT_TRUE(set.ok()) << formatted(set);
  EXPECT_EQ(set.config->offload->max_queue, 0u);
  EXPECT_EQ(set.config->offload->queue_timeout, 250ms);
  expectOneError(std::string(kOffload) + "  queue_timeout: 0\n", 6, 18,
                 "offload.queue_timeout: must be greater than 0", Purpose::Offload);
  expectOneError(std::string(kOffload) + "  max_queue: -1\n", 6, 14, "offload.max_queue",
                 Purpose::Offload);
}

TEST(ConfigToJsonTest, RedactedKeepsEnvKeysAndHidesValues) {
  LoadResult r = load(poolConfig(
      "    command: [w, \"{socket}\"]\n    env: {API_KEY: \"s3cret\", PYTHONUNBUFFERED: \"1\"}\n"));
  ASSERT_TRUE(r.ok()) << formatted(r);
  nlohmann::json whole = configToJson(*r.config);
  nlohmann::json shown = configToJsonRedacted(*r.config);
  EXPECT_EQ(whole["pools"]["w"]["env"]["API_KEY"], "s3cret");
  EXPECT_EQ(shown["pools"]["w"]["env"]["API_KEY"], kRedacted);
  EXPECT_EQ(shown["pools"]["w"]["env"]["PYTHONUNBUFFERED"], kRedacted);
  EXPECT_EQ(shown["pools"]["w"]["env"].size(), 2u);
  EXPECT_EQ(shown.dump().find("s3cret"), std::string::npos);
  shown["pools"]["w"]["env"] = whole["pools"]["w"]["env"];
  EXPECT_EQ(shown, whole);  // nothing else differs
}

// ---------------------------------------------------------------------------------------------
// YAML syntax errors in words, at the line to fix

TEST(ConfigYamlErrorTest, TabInIndentationIsNamed) {
  expectOneError("listen: \"127.0.0.1:8080\"\nupstreams:\n  app:\n\tendpoints: [\"x:1\"]\n", 4, 1,
                 "a tab character in the indentation");
  // On a blank line too (yaml-cpp: "illegal tab when looking for indentation").
  expectOneError(std::string(kMinimal) + "\n\t\nlog: {level: info}\n", 9, 1,
                 "a tab character in the indentation");
  // A tab inside a block scalar is content, and a tab after a colon is plain separation.
  LoadResult ok = load(std::string(kMinimal) + "log:\n  level:\tinfo\n");
  EXPECT_TRUE(ok.ok()) << formatted(ok);
}

TEST(ConfigYamlErrorTest, FirstKeyOfAMappingMisIndentedIsBlamedNotTheNextOne) {
  // yaml-cpp notices at line 5 ("end of map not found"); the line to fix is 4.
  constexpr std::string_view kYaml = R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app:
     endpoints: ["127.0.0.1:8000"]
    balance: round_robin
routes: [{match: {prefix: /}, upstream: app}]
)yaml";
  expectOneError(kYaml, 4, 6,
                 "bad indentation: \"endpoints: [\"127.0.0.1:8000\"]\" is indented 5 spaces, but the "
                 "next line at its level (line 5");
}

TEST(ConfigYamlErrorTest, KeyBetweenTwoLevelsIsBlamed) {
  constexpr std::string_view kYaml = R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app:
    endpoints: ["127.0.0.1:8000"]
   balance: round_robin
routes: [{match: {prefix: /}, upstream: app}]
)yaml";
  expectOneError(kYaml, 5, 4, "\"balance: round_robin\" is indented 3 spaces, which lines up with "
                              "no block around it");
}

TEST(ConfigYamlErrorTest, KeyIndentedUnderALineWithAValue) {
  constexpr std::string_view kYaml = R"yaml(listen: "127.0.0.1:8080"
upstreams:
  app:
    endpoints: ["127.0.0.1:8000"]
routes:
  - match: {prefix: /}
    upstream: app
      timeout: 5s
)yaml";
  expectOneError(kYaml, 8, 7, "deeper than the line above it (line 7, \"upstream: app\"), which "
                              "already has a value");
}

TEST(ConfigYamlErrorTest, ListEntryMistakes) {
  expectOneError(std::string(kMinimal) + "  -name: b\n", 8, 3, "put a space after the '-'");
  expectOneError(std::string(kMinimal) + "  timeout: 5s\n", 8, 3,
                 "is at the column of the list from line 6 but does not start with \"- \"");
}

TEST(ConfigYamlErrorTest, UnclosedBracketIsPointedAt) {
  expectOneError("listen: \"127.0.0.1:8080\"\nroutes:\n  - {match: {prefix: /}, upstream: app\n"
                 "upstreams: {app: {endpoints: [\"x:1\"]}}\n",
                 3, 5, "this '{' is never closed");
}

TEST(ConfigYamlErrorTest, OtherErrorsKeepTheParsersPositionInWords) {
  // A second ': ' inside a plain value.
  LoadResult r = load(std::string(kMinimal) + "log: {level: a: b}\n");
  ASSERT_EQ(r.errors.size(), 1u) << formatted(r);
  EXPECT_EQ(r.errors[0].line, 8) << formatted(r);
  EXPECT_NE(r.errors[0].message.find("YAML syntax error"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Warnings: valid but probably wrong

std::vector<std::string> warningsOf(std::string_view yaml, Purpose purpose = Purpose::Any) {
  LoadResult r = load(yaml, purpose);
  EXPECT_TRUE(r.ok()) << formatted(r);
  std::vector<std::string> out;
  for (const ConfigError& w : r.warnings) out.push_back(w.format());
  return out;
}

TEST(ConfigLintTest, SpecExampleAndMinimalHaveNoWarnings) {
  EXPECT_EQ(warningsOf(kSpecExample), std::vector<std::string>{});
  EXPECT_EQ(warningsOf(kMinimal), std::vector<std::string>{});
}

TEST(ConfigLintTest, RouteShadowedByAnEarlierOne) {
  constexpr std::string_view kYaml = R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
routes:
  - {name: all, match: {prefix: /}, upstream: app}
  - {name: cpu, match: {prefix: /cpu/}, upstream: app}
  - {name: health, match: {exact: /healthz}, upstream: app}
  - {name: re, match: {regex: "/x/[0-9]+"}, upstream: app}
)yaml";
  auto w = warningsOf(kYaml);
  ASSERT_EQ(w.size(), 3u) << ::testing::PrintToString(w);
  EXPECT_EQ(w[0].rfind("test.yaml:5:5: warning: route \"cpu\" is never used: route \"all\" (line 4, "
                       "prefix \"/\", any method and host) comes first",
                       0),
            0u)
      << w[0];
  EXPECT_NE(w[1].find("route \"health\" is never used"), std::string::npos) << w[1];
  EXPECT_NE(w[2].find("route \"re\" is never used"), std::string::npos) << w[2];
}

TEST(ConfigLintTest, NarrowerEarlierRoutesShadowNothing) {
  constexpr std::string_view kYaml = R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
routes:
  - {name: a, match: {prefix: /cpu/, methods: [POST]}, upstream: app}
  - {name: b, match: {prefix: /cpu/hash}, upstream: app}
  - {name: c, match: {prefix: /, host: api.example.com}, upstream: app}
  - {name: d, match: {prefix: /}, upstream: app}
  - {name: e, match: {regex: "/.*"}, upstream: app}
  - {name: f, match: {exact: /x}, upstream: app}
)yaml";
  // b: a covers POST only; d: c covers one host only; f is shadowed by d, and e by d too.
  auto w = warningsOf(kYaml);
  ASSERT_EQ(w.size(), 2u) << ::testing::PrintToString(w);
  EXPECT_NE(w[0].find("route \"e\" is never used: route \"d\""), std::string::npos) << w[0];
  EXPECT_NE(w[1].find("route \"f\" is never used: route \"d\""), std::string::npos) << w[1];
  // Methods: a superset shadows, the same prefix with fewer methods does not.
  auto m = warningsOf(R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
routes:
  - {name: a, match: {prefix: /api/, methods: [GET, POST]}, upstream: app}
  - {name: b, match: {prefix: /api/v2/, methods: [GET]}, upstream: app}
  - {name: c, match: {prefix: /api/, methods: [GET, PUT]}, upstream: app}
)yaml");
  ASSERT_EQ(m.size(), 1u) << ::testing::PrintToString(m);
  EXPECT_NE(m[0].find("route \"b\" is never used: route \"a\""), std::string::npos) << m[0];
}

TEST(ConfigLintTest, UnusedPoolUnlessOffloadUsesIt) {
  constexpr std::string_view kYaml = R"yaml(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
pools:
  cpu: {command: [w, "{socket}"]}
  spare: {command: [w, "{socket}"]}
routes:
  - {name: r, match: {prefix: /cpu/}, pool: cpu}
  - {name: d, match: {prefix: /}, upstream: app}
)yaml";
  auto w = warningsOf(kYaml);
  ASSERT_EQ(w.size(), 1u) << ::testing::PrintToString(w);
  EXPECT_EQ(w[0].rfind("test.yaml:5:3: warning: pool \"spare\" is not used", 0), 0u) << w[0];
  auto with_offload = warningsOf(std::string(kYaml) + "offload: {listen: \"unix:/tmp/o.sock\", pool: spare}\n");
  EXPECT_EQ(with_offload, std::vector<std::string>{});
}

TEST(ConfigLintTest, RouteLimitAbovePoolCapacity) {
  auto w = warningsOf(R"yaml(listen: "127.0.0.1:8080"
pools:
  cpu: {command: [w, "{socket}"], workers: 2, concurrency_per_worker: 2}
routes:
  - {name: big, match: {prefix: /a/}, pool: cpu, limits: {max_in_flight: 5}}
  - {name: fits, match: {prefix: /b/}, pool: cpu, limits: {max_in_flight: 4}}
  - {name: open, match: {prefix: /c/}, pool: cpu}
)yaml");
  ASSERT_EQ(w.size(), 1u) << ::testing::PrintToString(w);
  EXPECT_NE(w[0].find("test.yaml:5:5: warning: route \"big\": max_in_flight 5 is above the "
                      "capacity of pool \"cpu\" (workers 2 x concurrency_per_worker 2 = 4)"),
            std::string::npos)
      << w[0];
}

}  // namespace
}  // namespace loopguard::config
