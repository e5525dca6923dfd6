#include "proxy/admin/access_policy.h"

#include <gtest/gtest.h>

namespace loopguard::admin {
namespace {

AdminPeer local() { return {true, ""}; }
AdminPeer remote(std::string_view auth = "") { return {false, auth}; }

TEST(AdminAccessPolicy, GuardsConfigReloadAndAdviceWithWhatIsBelow) {
  AdminAccessPolicy p;
  for (const char* path : {"/config", "/reload", "/advice", "/advice/reset"}) {
    EXPECT_TRUE(p.guards(path)) << path;
  }
  for (const char* path : {"/healthz", "/readyz", "/metrics", "/", "/status", "/configx",
                           "/advicex"}) {
    EXPECT_FALSE(p.guards(path)) << path;
  }
}

TEST(AdminAccessPolicy, WithoutATokenLoopbackOnly) {
  AdminAccessPolicy p;
  EXPECT_TRUE(p.check("/config", local()).allowed());
  EXPECT_EQ(p.check("/config", remote()).status, 403);
  EXPECT_EQ(p.check("/advice/reset", remote("Bearer x")).status, 403);
  EXPECT_TRUE(p.check("/metrics", remote()).allowed());
}

TEST(AdminAccessPolicy, WithATokenEveryoneMustPresentIt) {
  AdminAccessPolicy p;
  p.setToken("s3cret-token");
  EXPECT_EQ(p.check("/reload", local()).status, 401);  // loopback too
  EXPECT_EQ(p.check("/reload", remote()).status, 401);
  EXPECT_EQ(p.check("/reload", remote("Basic czNjcmV0")).status, 401);
  EXPECT_EQ(p.check("/reload", remote("Bearer s3cret-tokem")).status, 403);
  EXPECT_EQ(p.check("/reload", remote("Bearer s3cret-token2")).status, 403);
  EXPECT_EQ(p.check("/reload", remote("Bearer s3cret")).status, 403);
  EXPECT_TRUE(p.check("/reload", remote("Bearer s3cret-token")).allowed());
  EXPECT_TRUE(p.check("/reload", remote("bearer   s3cret-token ")).allowed());
  EXPECT_TRUE(p.check("/healthz", remote()).allowed());
}

TEST(AdminAccessPolicy, LoopbackAddresses) {
  for (const char* ip : {"127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(isLoopbackAddress(ip)) << ip;
  }
  for (const char* ip : {"10.0.0.1", "192.0.2.2", "::", "::ffff:10.0.0.1", "fe80::1", "", "1.127.0.0"}) {
    EXPECT_FALSE(isLoopbackAddress(ip)) << ip;
  }
}

TEST(AdminAccessPolicy, ConstantTimeEquals) {
  EXPECT_TRUE(constantTimeEquals("abc", "abc"));
  EXPECT_FALSE(constantTimeEquals("abc", "abd"));
  EXPECT_FALSE(constantTimeEquals("abc", "abcabc"));  // the secret repeated is not the secret
  EXPECT_FALSE(constantTimeEquals("abc", ""));
  EXPECT_FALSE(constantTimeEquals("", ""));
}

}  // namespace
}  // namespace loopguard::admin
