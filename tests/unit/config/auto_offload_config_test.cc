#include <gtest/gtest.h>

#include "config/loader.h"
#include "config/to_json.h"

namespace loopguard::config {
namespace {

const char* kHead =
    "listen: \"127.0.0.1:0\"\n"                                              // 1
    "upstreams: {app: {endpoints: [\"127.0.0.1:1\"]}}\n"                     // 2
    "pools: {cpu: {command: [w, \"{socket}\"]}, other: {command: [w, \"{socket}\"]}}\n"  // 3
    "routes:\n"                                                              // 4
    "  - name: app\n"                                                        // 5
    "    match: {prefix: /}\n";                                              // 6

LoadResult load(const std::string& rest) {
  return loadConfigString(std::string(kHead) + rest, "t.yaml", Purpose::Proxy);
}

TEST(AutoOffloadConfig, PoolAndDefaultConfidence) {
  LoadResult r = load("    upstream: app\n    auto_offload: {pool: cpu}\n");
  ASSERT_TRUE(r.ok()) << r.errors[0].format();
  const Route& route = r.config->routes[0];
  ASSERT_TRUE(route.auto_offload.has_value());
  EXPECT_EQ(route.auto_offload->pool, "cpu");
  EXPECT_DOUBLE_EQ(route.auto_offload->min_confidence, 0.95);
  EXPECT_FALSE(route.buffer_request);  // the route itself still streams to the app
  // The pool is started in proxy mode although no route names it as its target, and `other`
  // (named by nobody) is the only unused one.
  EXPECT_TRUE(r.config->routesToPool("cpu"));
  EXPECT_FALSE(r.config->routesToPool("other"));
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].message.find("pool \"other\" is not used"), std::string::npos);
  // GET /config (and the advisor's suggested_config, built from it) keep it.
  nlohmann::json j = configToJson(*r.config);
  EXPECT_EQ(j["routes"][0]["auto_offload"]["pool"], "cpu");
  EXPECT_DOUBLE_EQ(j["routes"][0]["auto_offload"]["min_confidence"].get<double>(), 0.95);
}

TEST(AutoOffloadConfig, MinConfidence) {
  LoadResult r = load("    upstream: app\n    auto_offload: {pool: cpu, min_confidence: 0.99}\n");
  ASSERT_TRUE(r.ok()) << r.errors[0].format();
  EXPECT_DOUBLE_EQ(r.config->routes[0].auto_offload->min_confidence, 0.99);
}

TEST(AutoOffloadConfig, ErrorsPointAtTheValue) {
  LoadResult r = load("    upstream: app\n"                                     // 7
                      "    auto_offload:\n"                                     // 8
                      "      pool: gpu\n"                                       // 9
                      "      min_confidence: 0.3\n"                             // 10
                      "      min_confidance: 1\n");                             // 11
  ASSERT_EQ(r.errors.size(), 3u) << r.errors[0].format();
  EXPECT_EQ(r.errors[0].format().substr(0, 11), "t.yaml:9:13");
  EXPECT_NE(r.errors[0].message.find("no pool named \"gpu\" (defined: cpu, other)"),
            std::string::npos)
      << r.errors[0].message;
  EXPECT_EQ(r.errors[1].line, 10);
  EXPECT_NE(r.errors[1].message.find("from 0.5 to 1"), std::string::npos) << r.errors[1].message;
  EXPECT_EQ(r.errors[2].line, 11);
  EXPECT_NE(r.errors[2].message.find("did you mean \"min_confidence\""), std::string::npos)
      << r.errors[2].message;
}

TEST(AutoOffloadConfig, NeedsAPool) {
  LoadResult r = load("    upstream: app\n    auto_offload: {min_confidence: 0.99}\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 8);
  EXPECT_NE(r.errors[0].message.find("missing required key \"pool\""), std::string::npos);
}

TEST(AutoOffloadConfig, NotANumber) {
  LoadResult r = load("    upstream: app\n    auto_offload: {pool: cpu, min_confidence: high}\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("got \"high\""), std::string::npos) << r.errors[0].message;
}

TEST(AutoOffloadConfig, UpstreamRoutesOnly) {
  LoadResult r = load("    pool: other\n    auto_offload: {pool: cpu}\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 8);
  EXPECT_NE(r.errors[0].message.find("upstream routes only"), std::string::npos)
      << r.errors[0].message;
}

TEST(AutoOffloadConfig, NeedsTheAdvisor) {
  LoadResult r = load("    upstream: app\n    auto_offload: {pool: cpu}\nadvice: {enabled: false}\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 8);
  EXPECT_NE(r.errors[0].message.find("advice.enabled is false"), std::string::npos)
      << r.errors[0].message;
}

}  // namespace
}  // namespace loopguard::config
