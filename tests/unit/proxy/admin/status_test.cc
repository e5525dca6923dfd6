// GET /status is assembled from sections that their owners register (the advisor adds its own).
#include "proxy/admin/status.h"

#include <gtest/gtest.h>

namespace loopguard::admin {
namespace {

AdminRequest get(const char* path, const char* method = "GET") {
  AdminRequest r;
  r.method = method;
  r.path = path;
  return r;
}

TEST(StatusBoard, SectionsKeepTheirOrderAndAReplacementKeepsItsPlace) {
  StatusBoard board;
  int calls = 0;
  board.add("loopguard", [&] { ++calls; return nlohmann::json{{"pid", 1}}; });
  board.add("routes", [] { return nlohmann::json::array({{{"name", "a"}}}); });
  board.add("advice", [] { return nlohmann::json{{"endpoints", nlohmann::json::array()}}; });
  board.add("routes", [] { return nlohmann::json::array({{{"name", "b"}}}); });
  nlohmann::json doc = board.render();
  EXPECT_EQ(doc["sections"], nlohmann::json::array({"loopguard", "routes", "advice"}));
  EXPECT_EQ(doc["routes"][0]["name"], "b");
  EXPECT_EQ(doc["loopguard"]["pid"], 1);
  EXPECT_TRUE(doc["advice"]["endpoints"].is_array());
  EXPECT_EQ(calls, 1);  // providers run per render, not before
}

TEST(StatusBoard, AnswersThePageAndTheDocumentOnly) {
  StatusBoard board;
  board.add("routes", [] { return nlohmann::json::array(); });
  auto page = board.handle(get("/"));
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->content_type, "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("fetch(\"status\""), std::string::npos);  // relative: works behind a prefix
  auto doc = board.handle(get("/status"));
  ASSERT_TRUE(doc);
  EXPECT_EQ(doc->content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(doc->body)["sections"], nlohmann::json::array({"routes"}));
  EXPECT_EQ(board.handle(get("/status", "POST"))->status, 405);
  EXPECT_FALSE(board.handle(get("/metrics")));
  EXPECT_FALSE(board.handle(get("/status/x")));
}

TEST(StatusBoard, InvalidUtf8InANameDoesNotBreakTheDocument) {
  StatusBoard board;
  board.add("routes", [] { return nlohmann::json::array({{{"name", std::string("caf\xe9")}}}); });
  auto doc = board.handle(get("/status"));
  ASSERT_TRUE(doc);
  EXPECT_EQ(doc->status, 200);
  nlohmann::json parsed = nlohmann::json::parse(doc->body, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded());
  EXPECT_EQ(parsed["routes"][0]["name"], "caf\xef\xbf\xbd");  // U+FFFD in place of the bad byte
}

}  // namespace
}  // namespace loopguard::admin
