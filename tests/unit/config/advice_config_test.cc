#include <gtest/gtest.h>

#include "config/loader.h"

namespace loopguard::config {
namespace {

const char* kBase = "listen: \"127.0.0.1:0\"\nupstreams: {app: {endpoints: [\"127.0.0.1:1\"]}}\n"
                    "routes: [{name: a, match: {prefix: /}, upstream: app}]\n";

LoadResult load(const std::string& advice) {
  return loadConfigString(std::string(kBase) + advice, "t.yaml", Purpose::Proxy);
}

TEST(AdviceConfig, DefaultsAreOnWithoutProbe) {
  LoadResult r = load("");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.config->advice.enabled);
  EXPECT_FALSE(r.config->advice.probe);
  EXPECT_EQ(r.config->advice.probe_path, "/");
  EXPECT_EQ(r.config->advice.min_samples, 30u);
}

TEST(AdviceConfig, EveryKey) {
  LoadResult r = load("advice:\n  enabled: false\n  probe: true\n  probe_path: /healthz?x=1\n  min_samples: 100\n");
  ASSERT_TRUE(r.ok()) << r.errors[0].format();
  EXPECT_FALSE(r.config->advice.enabled);
  EXPECT_TRUE(r.config->advice.probe);
  EXPECT_EQ(r.config->advice.probe_path, "/healthz?x=1");
  EXPECT_EQ(r.config->advice.min_samples, 100u);
}

TEST(AdviceConfig, ErrorsPointAtTheValue) {
  LoadResult r = load("advice:\n  probe: yes please\n  probe_path: \"no slash\"\n  min_samples: 3\n  prob: true\n");
  ASSERT_EQ(r.errors.size(), 4u);
  EXPECT_EQ(r.errors[0].format().substr(0, 11), "t.yaml:5:10");
  EXPECT_NE(r.errors[0].message.find("true or false"), std::string::npos) << r.errors[0].message;
  EXPECT_EQ(r.errors[1].line, 6);
  EXPECT_NE(r.errors[1].message.find("probe_path must be a path"), std::string::npos);
  EXPECT_EQ(r.errors[2].line, 7);
  EXPECT_NE(r.errors[2].message.find("min_samples"), std::string::npos) << r.errors[2].message;
  EXPECT_EQ(r.errors[3].line, 8);
  EXPECT_NE(r.errors[3].message.find("did you mean \"probe\""), std::string::npos)
      << r.errors[3].message;
}

TEST(AdviceConfig, NotAMapping) {
  LoadResult r = load("advice: [1]\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 4);
}

}  // namespace
}  // namespace loopguard::config
