#include <gtest/gtest.h>

#include <string>

#include "config/loader.h"
#include "config/to_json.h"
#include "proxy/advice/suggested_config.h"

namespace loopguard::advice {
namespace {

constexpr const char* kRich = R"(listen: "127.0.0.1:8080"
admin: {listen: "127.0.0.1:9901"}
log: {level: debug, format: json, access_log: false}
limits: {max_connections: 500, max_header_bytes: 32KiB, max_body_bytes: 10MiB}
timeouts: {header: 5s, idle: 30s, drain: 10s}
upstreams:
  app:
    endpoints: ["127.0.0.1:8000", "unix:/tmp/app.sock"]
    balance: round_robin
    connect_timeout: 1s
    response_timeout: 20s
    max_idle_connections: 8
    idle_timeout: 3s
    resolve_every: 10s
pools:
  cpu:
    command: ["python3", "-m", "uvicorn", "app:app", "--uds", "{socket}"]
    workers: 3
    concurrency_per_worker: 2
    env: {A: "1", "B C": "x y"}
    workdir: "/srv/app"
    ready: {path: /healthz, timeout: 20s}
    request_timeout: 15s
    max_requests: 1000
    max_rss: 512MiB
    restart_backoff: {initial: 200ms, max: 5s}
    slow_after: 2s
    on_slow: ["py-spy", "dump", "--pid", "{pid}"]
routes:
  - name: heavy
    match: {regex: "/reports/[0-9]+", methods: [POST], host: api.example.com}
    pool: cpu
    limits: {max_in_flight: 6, max_queue: 10, queue_timeout: 2s, overflow_status: 429}
    buffer_limit: 1MiB
    timeout: 30s
  - name: api
    match: {prefix: /api/, host: api.example.com}
    upstream: app
    limits: {max_queue: 100, queue_timeout: 3s}
    timeout: 25s
  - name: default
    match: {prefix: /}
    upstream: app
advice: {probe: true, probe_path: /healthz, min_samples: 50}
)";

std::shared_ptr<const config::Config> load(const std::string& text) {
  config::LoadResult r = config::loadConfigString(text, "suggested.yaml", config::Purpose::Any);
  std::string errors;
  for (const auto& e : r.errors) errors += e.format() + "\n";
  EXPECT_TRUE(r.ok()) << errors << "\n" << text;
  return r.config;
}

EndpointReport blocking(const std::string& route, const std::string& method,
                        const std::string& path) {
  EndpointReport e;
  e.endpoint = EndpointInfo{route, method, path, "app"};
  e.verdict.kind = VerdictKind::BlocksLoop;
  e.verdict.blocking_ms = 8.1;
  e.verdict.loop_share = 0.04;
  e.verdict.confidence = 0.99;
  e.evidence.samples = 180;
  return e;
}

TEST(AdviceSuggestedConfig, TheRunningConfigRoundTripsThroughItsYaml) {
  auto running = load(kRich);
  ASSERT_TRUE(running);
  std::string yaml = suggestedConfig(*running, {});
  auto again = load(yaml);
  ASSERT_TRUE(again);
  EXPECT_EQ(config::configToJson(*again), config::configToJson(*running)) << yaml;
  EXPECT_NE(yaml.find("no endpoint was found blocking"), std::string::npos);
}

TEST(AdviceSuggestedConfig, ARoutePerBlockingEndpointAheadOfItsRoute) {
  auto running = load(kRich);
  std::vector<EndpointReport> eps = {blocking("api", "GET", "/api/users/{}/avatar"),
                                     blocking("default", "GET", "/cpu/hash"),
                                     blocking("api", "GET", "{other}")};
  EndpointReport fine = blocking("default", "GET", "/io");
  fine.verdict.kind = VerdictKind::Ok;
  eps.push_back(fine);
  std::string yaml = suggestedConfig(*running, eps);
  auto suggested = load(yaml);
  ASSERT_TRUE(suggested);
  const auto& routes = suggested->routes;
  ASSERT_EQ(routes.size(), 5u) << yaml;
  EXPECT_EQ(routes[0].name, "heavy");
  EXPECT_EQ(routes[1].name, "api-offload-get-api-users-avatar");
  EXPECT_EQ(routes[1].match.kind, config::MatchKind::Regex);
  EXPECT_EQ(routes[1].match.pattern, "/api/users/[^/]+/avatar");
  EXPECT_EQ(routes[1].match.host, "api.example.com");  // never wider than the route it leaves
  EXPECT_EQ(routes[1].match.methods, std::vector<std::string>{"GET"});
  EXPECT_EQ(routes[1].target_kind, config::TargetKind::Pool);
  EXPECT_EQ(routes[1].target, "cpu");
  EXPECT_EQ(routes[1].limits.max_in_flight, 6u);  // workers x concurrency_per_worker
  EXPECT_EQ(routes[1].limits.queue_timeout, running->routes[1].limits.queue_timeout);
  EXPECT_EQ(routes[1].timeout, running->routes[1].timeout);
  EXPECT_TRUE(routes[1].buffer_request);
  EXPECT_EQ(routes[2].name, "api");
  EXPECT_EQ(routes[3].name, "default-offload-get-cpu-hash");
  EXPECT_EQ(routes[3].match.kind, config::MatchKind::Exact);
  EXPECT_EQ(routes[3].match.pattern, "/cpu/hash");
  EXPECT_EQ(routes[4].name, "default");
  EXPECT_NE(yaml.find("GET {other} on route api blocks the loop too"), std::string::npos);
  EXPECT_NE(yaml.find("# loopguard advise: GET /cpu/hash blocks the event loop"), std::string::npos);
  EXPECT_EQ(yaml.find("/io\""), std::string::npos);

  // Applied, nothing more is suggested for the same findings: they go to the pool already.
  std::string again = suggestedConfig(*suggested, eps);
  auto twice = load(again);
  ASSERT_TRUE(twice);
  EXPECT_EQ(twice->routes.size(), 5u) << again;
}

TEST(AdviceSuggestedConfig, WithoutAPoolAPlaceholderIsLeftForTheOperator) {
  auto running = load(R"(listen: "127.0.0.1:8080"
upstreams: {app: {endpoints: ["127.0.0.1:8000"]}}
routes: [{name: app, match: {prefix: /}, upstream: app}]
)");
  std::string yaml = suggestedConfig(*running, {blocking("app", "POST", "/thumbnail")});
  EXPECT_NE(yaml.find("# pools:\n#   cpu:\n#     command:"), std::string::npos) << yaml;
  config::LoadResult r = config::loadConfigString(yaml, "s.yaml", config::Purpose::Any);
  ASSERT_EQ(r.errors.size(), 1u) << yaml;
  EXPECT_NE(r.errors[0].message.find("cpu"), std::string::npos) << r.errors[0].format();
  // Uncommented, it validates.
  std::string fixed = yaml;
  for (size_t at; (at = fixed.find("\n# pools:")) != std::string::npos;) fixed.replace(at, 3, "\n");
  for (const char* line : {"#   cpu:", "#     command", "#     workers", "#     concurrency", "#     ready"}) {
    size_t at = fixed.find(line);
    ASSERT_NE(at, std::string::npos) << line;
    fixed.erase(at, 2);
  }
  EXPECT_TRUE(load(fixed)) << fixed;
}

TEST(AdviceSuggestedConfig, NamesStayUnique) {
  auto running = load(R"(listen: "127.0.0.1:8080"
upstreams: {my.app: {endpoints: ["127.0.0.1:8000"]}}
pools: {cpu: {command: ["w", "{socket}"]}}
routes:
  - {name: app-offload-get-x, match: {exact: /y}, upstream: my.app}
  - {name: app, match: {prefix: /}, upstream: my.app}
)");
  std::string yaml = suggestedConfig(*running, {blocking("app", "GET", "/x")});
  auto s = load(yaml);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->routes[1].name, "app-offload-get-x-2");
  EXPECT_EQ(s->upstreams[0].name, "my.app");
}

}  // namespace
}  // namespace loopguard::advice
