#include "proxy/http/path_normalize.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace loopguard::http {
namespace {

// The normalised form, or "INVALID: <why>".
std::string norm(std::string_view raw) {
  std::string out = "garbage from before";
  const char* why = nullptr;
  if (normalizePath(raw, out, &why) != PathStatus::Ok) {
    EXPECT_NE(why, nullptr) << raw;
    return std::string("INVALID: ") + (why ? why : "");
  }
  return out;
}

std::string decoded(std::string_view raw) {
  std::string out;
  const char* why = nullptr;
  if (decodePath(raw, out, &why) != PathStatus::Ok) return "INVALID";
  return out;
}

bool invalid(std::string_view raw) { return norm(raw).starts_with("INVALID"); }

TEST(PathNormalize, PlainPathsStayAsTheyAre) {
  for (std::string_view p : {"/", "/a", "/a/", "/cpu/hash", "/a/b/c.txt", "/a;b=c/d", "/~u/x-y_z",
                             "/a:b@c!$&'()*+,;=", "/.well-known/acme", "/a..b/c.", "/..a/.b"}) {
    EXPECT_EQ(norm(p), p);
  }
}

// RFC 3986 5.2.4 (remove_dot_segments) and the dot-segment cases of 5.4.1/5.4.2, as absolute
// paths ("/b/c/" is the base's directory there).
TEST(PathNormalize, Rfc3986DotSegmentExamples) {
  const std::vector<std::pair<std::string_view, std::string_view>> cases = {
      {"/a/b/c/./../../g", "/a/g"},  // 5.2.4
      {"/b/c/g", "/b/c/g"},
      {"/b/c/./g", "/b/c/g"},
      {"/b/c/g/", "/b/c/g/"},
      {"/b/c/.", "/b/c/"},
      {"/b/c/./", "/b/c/"},
      {"/b/c/..", "/b/"},
      {"/b/c/../", "/b/"},
      {"/b/c/../g", "/b/g"},
      {"/b/c/../..", "/"},
      {"/b/c/../../", "/"},
      {"/b/c/../../g", "/g"},
      {"/./g", "/g"},  // 5.4.2
      {"/b/c/g.", "/b/c/g."},
      {"/b/c/.g", "/b/c/.g"},
      {"/b/c/g..", "/b/c/g.."},
      {"/b/c/..g", "/b/c/..g"},
      {"/b/c/./../g", "/b/g"},
      {"/b/c/./g/.", "/b/c/g/"},
      {"/b/c/g/./h", "/b/c/g/h"},
      {"/b/c/g/../h", "/b/c/h"},
      {"/b/c/g;x=1/./y", "/b/c/g;x=1/y"},
      {"/b/c/g;x=1/../y", "/b/c/y"},
  };
  for (const auto& [raw, want] : cases) EXPECT_EQ(norm(raw), want) << raw;
}

TEST(PathNormalize, DotDotAboveTheRootIsRefused) {
  // RFC 3986 would drop the extra "..": a proxy refuses instead (nginx: 400 too), since the app
  // behind may not drop it the same way.
  for (std::string_view p : {"/..", "/../", "/../g", "/b/c/../../../g", "/a/../..", "/%2e%2e/cpu",
                             "/.%2E/x", "/a/%2e%2e/%2e%2e"}) {
    EXPECT_TRUE(invalid(p)) << p;
  }
}

TEST(PathNormalize, RepeatedSlashesMerge) {
  EXPECT_EQ(norm("//cpu/hash"), "/cpu/hash");
  EXPECT_EQ(norm("/cpu///hash//"), "/cpu/hash/");
  EXPECT_EQ(norm("//"), "/");
  EXPECT_EQ(norm("/.//./cpu/.//hash"), "/cpu/hash");
}

TEST(PathNormalize, EveryEscapeIsDecodedExactlyOnce) {
  EXPECT_EQ(norm("/%63pu/hash"), "/cpu/hash");
  EXPECT_EQ(norm("/%43%50%55"), "/CPU");  // case is kept: paths are case-sensitive
  EXPECT_EQ(norm("/cpu%2Fhash"), "/cpu/hash");  // uvicorn decodes %2F before routing
  EXPECT_EQ(norm("/cpu%2fhash"), "/cpu/hash");
  EXPECT_EQ(norm("/x%2F..%2Fcpu%2Fhash"), "/cpu/hash");  // decoded slashes and dots resolve
  EXPECT_EQ(norm("/x/%2E/cpu"), "/x/cpu");
  EXPECT_EQ(norm("/cpu%252Fhash"), "/cpu%2Fhash");  // the app sees the text "%2F"
  EXPECT_EQ(norm("/%2563pu"), "/%63pu");
  EXPECT_EQ(norm("/%252e%252e/x"), "/%2e%2e/x");  // not a dot segment once decoded once
  EXPECT_EQ(norm("/caf%C3%A9"), "/caf\xC3\xA9");  // encoded UTF-8 is fine
  EXPECT_EQ(norm("/a%20b"), "/a b");
  EXPECT_EQ(norm("/a%3Fb%23c"), "/a?b#c");
}

TEST(PathNormalize, RefusesWhatAppsReadDifferently) {
  for (std::string_view p : {
           "",             // not a path
           "cpu/hash",     // relative
           "*",            // asterisk-form is not a path
           "/a%",          // truncated escapes
           "/a%4",
           "/a%zz",
           "/a%4g",
           "/a%%41",
           "/a%00b",       // NUL
           "/cpu%5Chash",  // backslash: some servers read it as '/'
           "/cpu%5chash",
           "/cpu\\hash",
           "/a b",         // unencoded space, controls, DEL, bytes >= 0x80
           "/a\tb",
           "/a\x01",
           "/a\x7f",
           "/caf\xC3\xA9",
           "/\x80",
           "/\xff",
       }) {
    EXPECT_TRUE(invalid(p)) << p;
  }
  std::string nul("/a\0b", 4);
  EXPECT_TRUE(invalid(nul));
}

TEST(PathNormalize, InvalidSaysWhy) {
  EXPECT_EQ(norm("/a%00"), "INVALID: NUL (%00) in path");
  EXPECT_EQ(norm("/.."), "INVALID: path climbs above the root with '..'");
  EXPECT_EQ(norm("/%zz"), "INVALID: invalid percent-escape in path");
}

TEST(PathNormalize, DecodePathKeepsSegmentsAsTheAppSeesThem) {
  EXPECT_EQ(decoded("/x/../cpu/hash"), "/x/../cpu/hash");
  EXPECT_EQ(decoded("//cpu/%68ash"), "//cpu/hash");
  EXPECT_EQ(decoded("/cpu%2F..%2Fio"), "/cpu/../io");
  EXPECT_EQ(decoded("/.."), "/..");  // climbing is normalizePath's refusal
  EXPECT_EQ(decoded("/a%5C"), "INVALID");
  EXPECT_EQ(decoded("/a%0"), "INVALID");
}

TEST(PathNormalize, NormalisingTwiceChangesNothing) {
  // Idempotent on paths whose decoded form has no '%' left to decode.
  for (std::string_view p : {"/a/./b/../c//d/", "//x/%2e/y", "/cpu%2Fhash", "/b/c/./g/."}) {
    std::string once = norm(p);
    EXPECT_EQ(norm(once), once) << p;
  }
}

}  // namespace
}  // namespace loopguard::http
