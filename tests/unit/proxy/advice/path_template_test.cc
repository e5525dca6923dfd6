#include <gtest/gtest.h>

#include "proxy/advice/endpoint_registry.h"
#include "proxy/advice/path_template.h"

namespace loopguard::advice {
namespace {

TEST(AdvicePathTemplate, FoldsIdentifiersAndDropsTheQuery) {
  EXPECT_EQ(pathTemplate("/users/42/orders?page=2"), "/users/{}/orders");
  EXPECT_EQ(pathTemplate("/items/550e8400-e29b-41d4-a716-446655440000"), "/items/{}");
  EXPECT_EQ(pathTemplate("/blobs/9f86d081884c7d65"), "/blobs/{}");                 // long hex
  EXPECT_EQ(pathTemplate("/t/dQw4w9WgXcQ2kMnP7rLs1vXy"), "/t/{}");                 // opaque token
  EXPECT_EQ(pathTemplate("/files/" + std::string(45, 'a')), "/files/{}");          // very long
  EXPECT_EQ(pathTemplate("/cpu/hash"), "/cpu/hash");
  EXPECT_EQ(pathTemplate("/v2/facade/deadbeefcafe1"), "/v2/facade/{}");
  EXPECT_EQ(pathTemplate("/reports/annual-summary"), "/reports/annual-summary");  // words stay
  EXPECT_EQ(pathTemplate("/"), "/");
  EXPECT_EQ(pathTemplate("/a//b/"), "/a//b/");
  EXPECT_EQ(pathTemplate("http://api.example.com/users/7?x"), "/users/{}");
  EXPECT_EQ(pathTemplate("*"), "*");
  EXPECT_EQ(pathTemplate("/x#frag"), "/x");
}

TEST(AdvicePathTemplate, SegmentKinds) {
  EXPECT_TRUE(isIdentifierSegment("0"));
  EXPECT_TRUE(isIdentifierSegment("1234567890123"));
  EXPECT_FALSE(isIdentifierSegment(""));
  EXPECT_FALSE(isIdentifierSegment("v2"));
  EXPECT_FALSE(isIdentifierSegment("facade"));         // hex letters, but a word
  EXPECT_FALSE(isIdentifierSegment("deadbeefcafe"));   // 12 hex letters without a digit
  EXPECT_TRUE(isIdentifierSegment("deadbeefcaf3"));
  EXPECT_FALSE(isIdentifierSegment("a-very-long-slug-with-words"));  // no digit
  EXPECT_TRUE(isIdentifierSegment("order_2024_abcdefghijk"));
}

TEST(AdvicePathTemplate, HugePathsAreCutAtASegment) {
  std::string path;
  for (int i = 0; i < 100; ++i) path += "/segment";
  std::string t = pathTemplate(path);
  EXPECT_LE(t.size(), kMaxTemplateBytes);
  EXPECT_EQ(t.substr(t.size() - 6), "/{...}");
}

TEST(AdviceEndpointRegistry, OneIdPerRouteMethodTemplate) {
  EndpointRegistry r;
  EndpointId a = r.intern("api", "GET", "/users/1", "app");
  EXPECT_EQ(r.intern("api", "GET", "/users/2?x=1", "app"), a);
  EXPECT_NE(r.intern("api", "POST", "/users/2", "app"), a);
  EXPECT_NE(r.intern("other", "GET", "/users/2", "app"), a);
  EXPECT_EQ(r.info(a).path, "/users/{}");
  EXPECT_EQ(r.info(a).upstream, "app");
  r.intern("api", "GET", "/users/3", "app2");  // the route now points elsewhere
  EXPECT_EQ(r.info(a).upstream, "app2");
  EndpointId found = 99;
  EXPECT_TRUE(r.find("api", "GET", "/users/9", found));
  EXPECT_EQ(found, a);
  EXPECT_FALSE(r.find("api", "GET", "/nope", found));
}

TEST(AdviceEndpointRegistry, AtMost200TemplatesPerRouteThenOther) {
  EndpointRegistry r;
  for (int i = 0; i < 250; ++i) r.intern("api", "GET", "/page" + std::string(1, 'a' + i % 26) + std::to_string(i % 10) + "x" + std::string(i / 26, 'q'), "app");
  EXPECT_EQ(r.size(), EndpointRegistry::kMaxTemplatesPerRoute + 1);
  EndpointId other = r.intern("api", "GET", "/brand/new", "app");
  EXPECT_EQ(r.info(other).path, "{other}");
  EndpointId found = 0;
  EXPECT_TRUE(r.find("api", "GET", "/another/new", found));
  EXPECT_EQ(found, other);
  // Another route still has its own 200.
  EXPECT_EQ(r.info(r.intern("web", "GET", "/brand/new", "app")).path, "/brand/new");
}

}  // namespace
}  // namespace loopguard::advice
