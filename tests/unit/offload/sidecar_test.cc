#include "offload/sidecar.h"

#include <gtest/gtest.h>

#include "config/loader.h"
#include "offload/pool_set.h"

namespace loopguard::offload {
namespace {

std::shared_ptr<const config::Config> load(std::string_view yaml, config::Purpose purpose) {
  config::LoadResult r = config::loadConfigString(yaml, "test.yaml", purpose);
  EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors[0].format());
  return r.config;
}

constexpr std::string_view kSidecarFile = R"(
offload:
  listen: "unix:/tmp/lg-offload.sock"
  pool: cpu
pools:
  cpu:
    command: ["app", "--uds", "{socket}"]
    workers: 3
    request_timeout: 7s
  other:
    command: ["other", "--port", "{port}"]
)";

TEST(SidecarConfig, OneImplicitRouteToTheOffloadPool) {
  auto file = load(kSidecarFile, config::Purpose::Offload);
  ASSERT_TRUE(file);
  auto cfg = sidecarConfig(*file);
  ASSERT_TRUE(cfg->listen);
  EXPECT_EQ(cfg->listen->toString(), "unix:/tmp/lg-offload.sock");
  ASSERT_EQ(cfg->pools.size(), 1u);
  EXPECT_EQ(cfg->pools[0].name, "cpu");
  ASSERT_EQ(cfg->routes.size(), 1u);
  const config::Route& r = cfg->routes[0];
  EXPECT_EQ(r.name, kSidecarRoute);
  EXPECT_EQ(r.match.kind, config::MatchKind::Prefix);
  EXPECT_EQ(r.match.pattern, "/");
  EXPECT_EQ(r.target_kind, config::TargetKind::Pool);
  EXPECT_EQ(r.target, "cpu");
  EXPECT_TRUE(r.buffer_request);
  EXPECT_FALSE(r.limits.max_in_flight);
  EXPECT_EQ(r.limits.max_queue, 1024u);
  EXPECT_EQ(r.limits.queue_timeout.count(), 7000);
  EXPECT_EQ(usedPools(*cfg).size(), 1u);
}

TEST(SidecarConfig, OffloadQueueSettingsBoundTheImplicitRoute) {
  std::string text(kSidecarFile);
  text.insert(text.find("  pool: cpu"), "  max_queue: 2\n  queue_timeout: 1500ms\n");
  auto file = load(text, config::Purpose::Offload);
  ASSERT_TRUE(file);
  auto cfg = sidecarConfig(*file);
  const config::Route& r = cfg->routes.at(0);
  EXPECT_EQ(r.limits.max_queue, 2u);
  EXPECT_EQ(r.limits.queue_timeout.count(), 1500);
}

TEST(UsedPools, OnlyPoolsThatARouteSendsTo) {
  auto cfg = load(R"(
listen: "127.0.0.1:0"
pools:
  a: {command: ["x", "{socket}"]}
  b: {command: ["y", "{socket}"]}
  c: {command: ["z", "{port}"]}
routes:
  - {name: r1, match: {prefix: /c/}, pool: c}
  - {name: r2, match: {prefix: /a/}, pool: a}
  - {name: r3, match: {prefix: /a2/}, pool: a}
)",
                  config::Purpose::Proxy);
  ASSERT_TRUE(cfg);
  auto used = usedPools(*cfg);
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(used[0]->name, "a");  // config order
  EXPECT_EQ(used[1]->name, "c");
}

}  // namespace
}  // namespace loopguard::offload
