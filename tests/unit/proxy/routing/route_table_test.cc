#include "proxy/routing/route_table.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace loopguard::routing {
namespace {

using config::MatchKind;

config::Route makeRoute(std::string name, MatchKind kind, std::string pattern,
                        std::vector<std::string> methods = {}, std::string host = {}) {
  config::Route route;
  route.name = std::move(name);
  route.match.kind = kind;
  route.match.pattern = std::move(pattern);
  route.match.methods = std::move(methods);
  route.match.host = std::move(host);
  route.target = "app";
  return route;
}

RouteTable makeTable(std::vector<config::Route> routes) {
  auto config = std::make_shared<config::Config>();
  config->routes = std::move(routes);
  return RouteTable(std::move(config));
}

// The matched route's name, or "" for no match.
std::string matchName(const RouteTable& table, std::string_view method, std::string_view path,
                      std::string_view host = "example.com") {
  const CompiledRoute* compiled = table.match(RequestView{method, path, host});
  return compiled == nullptr ? std::string() : compiled->route->name;
}

TEST(RouteTableTest, PrefixMatchesPathsStartingWithPattern) {
  RouteTable table = makeTable({makeRoute("cpu", MatchKind::Prefix, "/cpu/")});
  EXPECT_EQ(matchName(table, "GET", "/cpu/"), "cpu");
  EXPECT_EQ(matchName(table, "GET", "/cpu/hash/1"), "cpu");
  EXPECT_EQ(matchName(table, "GET", "/cpu"), "");
  EXPECT_EQ(matchName(table, "GET", "/cpux/"), "");
  EXPECT_EQ(matchName(table, "GET", "/CPU/"), "");  // paths are case-sensitive
}

TEST(RouteTableTest, ExactMatchesOnlyTheSamePath) {
  RouteTable table = makeTable({makeRoute("login", MatchKind::Exact, "/login")});
  EXPECT_EQ(matchName(table, "POST", "/login"), "login");
  EXPECT_EQ(matchName(table, "POST", "/login/"), "");
  EXPECT_EQ(matchName(table, "POST", "/log"), "");
}

TEST(RouteTableTest, RegexMustMatchTheWholePath) {
  RouteTable table = makeTable({makeRoute("item", MatchKind::Regex, "/items/[0-9]+")});
  ASSERT_NE(table.routes()[0].regex, nullptr);
  EXPECT_EQ(matchName(table, "GET", "/items/42"), "item");
  EXPECT_EQ(matchName(table, "GET", "/items/42/edit"), "");
  EXPECT_EQ(matchName(table, "GET", "/v1/items/42"), "");
  EXPECT_EQ(matchName(table, "GET", "/items/"), "");
}

TEST(RouteTableTest, RegexThatDoesNotCompileNeverMatches) {
  RouteTable table = makeTable({makeRoute("bad", MatchKind::Regex, "/items/(unclosed"),
                                makeRoute("all", MatchKind::Prefix, "/")});
  EXPECT_EQ(matchName(table, "GET", "/items/(unclosed"), "all");
}

TEST(RouteTableTest, MethodsRestrictTheRoute) {
  RouteTable table = makeTable({makeRoute("write", MatchKind::Prefix, "/", {"POST", "PUT"}),
                                makeRoute("read", MatchKind::Prefix, "/")});
  EXPECT_EQ(matchName(table, "POST", "/x"), "write");
  EXPECT_EQ(matchName(table, "PUT", "/x"), "write");
  EXPECT_EQ(matchName(table, "GET", "/x"), "read");
  EXPECT_EQ(matchName(table, "post", "/x"), "read");  // methods are case-sensitive tokens
}

TEST(RouteTableTest, HostIgnoresCaseAndPort) {
  RouteTable table = makeTable({makeRoute("api", MatchKind::Prefix, "/", {}, "api.example.com")});
  EXPECT_EQ(matchName(table, "GET", "/", "api.example.com"), "api");
  EXPECT_EQ(matchName(table, "GET", "/", "API.Example.COM"), "api");
  EXPECT_EQ(matchName(table, "GET", "/", "api.example.com:8080"), "api");
  EXPECT_EQ(matchName(table, "GET", "/", "Api.Example.Com:443"), "api");
  EXPECT_EQ(matchName(table, "GET", "/", "api.example.com."), "api");
  EXPECT_EQ(matchName(table, "GET", "/", "www.example.com"), "");
  EXPECT_EQ(matchName(table, "GET", "/", "api.example.com.evil"), "");
  EXPECT_EQ(matchName(table, "GET", "/", ""), "");
}

TEST(RouteTableTest, HostIpv6Literal) {
  RouteTable table = makeTable({makeRoute("v6", MatchKind::Prefix, "/", {}, "[::1]"),
                                makeRoute("v6bare", MatchKind::Prefix, "/", {}, "fe80::1")});
  EXPECT_EQ(matchName(table, "GET", "/", "[::1]"), "v6");
  EXPECT_EQ(matchName(table, "GET", "/", "[::1]:8080"), "v6");
  EXPECT_EQ(matchName(table, "GET", "/", "[FE80::1]:8080"), "v6bare");
  EXPECT_EQ(matchName(table, "GET", "/", "[::2]:8080"), "");
  EXPECT_EQ(matchName(table, "GET", "/", "[::1"), "");  // malformed
}

TEST(RouteTableTest, FirstMatchWins) {
  RouteTable table = makeTable({makeRoute("exact", MatchKind::Exact, "/cpu/hash"),
                                makeRoute("cpu", MatchKind::Prefix, "/cpu/"),
                                makeRoute("default", MatchKind::Prefix, "/")});
  EXPECT_EQ(matchName(table, "GET", "/cpu/hash"), "exact");
  EXPECT_EQ(matchName(table, "GET", "/cpu/other"), "cpu");
  EXPECT_EQ(matchName(table, "GET", "/"), "default");

  const CompiledRoute* compiled = table.match(RequestView{"GET", "/cpu/other", "h"});
  ASSERT_NE(compiled, nullptr);
  EXPECT_EQ(compiled->index, 1u);
  EXPECT_EQ(compiled->route, &table.config().routes[1]);
}

TEST(RouteTableTest, NoMatchIsNullptr) {
  RouteTable table = makeTable({makeRoute("api", MatchKind::Prefix, "/api/")});
  EXPECT_EQ(table.match(RequestView{"GET", "/other", "h"}), nullptr);
  EXPECT_EQ(makeTable({}).match(RequestView{"GET", "/", "h"}), nullptr);
}

TEST(RouteTableTest, KeepsConfigAlive) {
  auto config = std::make_shared<config::Config>();
  config->routes.push_back(makeRoute("all", MatchKind::Prefix, "/"));
  std::weak_ptr<const config::Config> weak = config;
  auto table = std::make_unique<RouteTable>(std::move(config));
  EXPECT_FALSE(weak.expired());
  EXPECT_EQ(matchName(*table, "GET", "/x"), "all");
  table.reset();
  EXPECT_TRUE(weak.expired());
}

// What a route table picks for a raw request-target, as Exchange::route() asks it.
std::string routeOf(const RouteTable& table, std::string_view target) {
  RoutingPath path;
  if (const char* why = path.assign(target)) return std::string("400: ") + why;
  const CompiledRoute* compiled =
      table.match(RequestView{"GET", path.normalized(), "example.com", path.appPath()});
  return compiled == nullptr ? std::string() : compiled->route->name;
}

RouteTable cpuAndCatchAll() {
  return makeTable({makeRoute("cpu", MatchKind::Prefix, "/cpu/"),
                    makeRoute("hash", MatchKind::Exact, "/hash"),
                    makeRoute("default", MatchKind::Prefix, "/")});
}

TEST(RoutingPathTest, EncodingTricksReachTheRouteTheirDecodedFormMatches) {
  RouteTable table = cpuAndCatchAll();
  for (std::string_view target : {"/cpu/hash", "/%63pu/hash", "/cpu%2Fhash", "//cpu/hash",
                                  "/./cpu/hash", "/x/../cpu/hash", "/x/%2e%2e/cpu/hash",
                                  "/x%2F..%2Fcpu/hash", "/%63%70%75/hash?q=/x", "/cpu/hash#f",
                                  "http://a.example//cpu/./hash?x", "/cpu/../hash"}) {
    EXPECT_EQ(routeOf(table, target), "cpu") << target;
  }
  EXPECT_EQ(routeOf(table, "/%68ash"), "hash");
  EXPECT_EQ(routeOf(table, "//hash"), "hash");
  EXPECT_EQ(routeOf(table, "/hash/."), "default");  // "/hash/" is not the exact "/hash"
  EXPECT_EQ(routeOf(table, "/cpu%252Fhash"), "default");  // the app sees the text "%2F"
  EXPECT_EQ(routeOf(table, "/io"), "default");
  EXPECT_EQ(routeOf(table, "*"), "");  // asterisk-form has no path to match
}

TEST(RoutingPathTest, AnEarlierRouteTheAppMaySeeWins) {
  // "/cpu/../io" is "/io" once resolved, but uvicorn hands "/cpu/../io" to the app, where a
  // "/cpu/{rest:path}" route would run the CPU handler: the first route either form matches.
  RouteTable table = cpuAndCatchAll();
  EXPECT_EQ(routeOf(table, "/cpu/../io"), "cpu");
  EXPECT_EQ(routeOf(table, "/cpu%2F..%2Fio"), "cpu");
  EXPECT_EQ(routeOf(table, "/cpu//../io"), "cpu");

  RouteTable io_first = makeTable({makeRoute("io", MatchKind::Prefix, "/io"),
                                   makeRoute("cpu", MatchKind::Prefix, "/cpu/")});
  EXPECT_EQ(routeOf(io_first, "/cpu/../io"), "io");
}

TEST(RoutingPathTest, UnroutablePathsSayWhy) {
  RouteTable table = cpuAndCatchAll();
  for (std::string_view target : {"/..", "/../cpu/hash", "/%2e%2e/cpu", "/a%00", "/a%zz", "/a%4",
                                  "/cpu%5Chash", "/cpu\\hash", "/caf\xC3\xA9", "/a\x7f"}) {
    EXPECT_TRUE(routeOf(table, target).starts_with("400: ")) << target;
  }
}

TEST(RoutingPathTest, PlainPathsAreNotCopied) {
  const std::string target = "/cpu/hash?x=1";
  RoutingPath path;
  ASSERT_EQ(path.assign(target), nullptr);
  EXPECT_EQ(path.normalized(), "/cpu/hash");
  EXPECT_EQ(path.normalized().data(), target.data());
  EXPECT_TRUE(path.appPath().empty());

  ASSERT_EQ(path.assign("/%63pu/hash"), nullptr);  // decodes to a single form
  EXPECT_EQ(path.normalized(), "/cpu/hash");
  EXPECT_TRUE(path.appPath().empty());

  ASSERT_EQ(path.assign("/a/../b"), nullptr);  // two forms
  EXPECT_EQ(path.normalized(), "/b");
  EXPECT_EQ(path.appPath(), "/a/../b");
}

TEST(RequestPathTest, OriginForm) {
  EXPECT_EQ(requestPath("/"), "/");
  EXPECT_EQ(requestPath("/a/b"), "/a/b");
  EXPECT_EQ(requestPath("/a/b?x=1&y=2"), "/a/b");
  EXPECT_EQ(requestPath("/a/b?"), "/a/b");
  EXPECT_EQ(requestPath("/a#frag"), "/a");
  EXPECT_EQ(requestPath("/a?q=1#frag"), "/a");
  EXPECT_EQ(requestPath("/?q"), "/");
}

TEST(RequestPathTest, AbsoluteForm) {
  EXPECT_EQ(requestPath("http://host/path?q=1"), "/path");
  EXPECT_EQ(requestPath("http://host:8080/a/b"), "/a/b");
  EXPECT_EQ(requestPath("HTTPS://host/a"), "/a");
  EXPECT_EQ(requestPath("http://host"), "/");
  EXPECT_EQ(requestPath("http://host?q=1"), "/");
  EXPECT_EQ(requestPath("http://host/"), "/");
  EXPECT_EQ(requestPath("http://[::1]:80/x?y"), "/x");
}

TEST(RequestPathTest, AsteriskAndOddForms) {
  EXPECT_EQ(requestPath("*"), "*");
  EXPECT_EQ(requestPath(""), "");
  EXPECT_EQ(requestPath("example.com:443"), "example.com:443");  // authority-form (CONNECT)
}

TEST(RequestPathTest, ReturnsAViewIntoTheTarget) {
  const std::string target = "/a/b?x";
  const std::string_view path = requestPath(target);
  EXPECT_EQ(path.data(), target.data());
}

}  // namespace
}  // namespace loopguard::routing
