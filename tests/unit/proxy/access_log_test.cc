#include "proxy/access_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace loopguard::proxy {
namespace {

constexpr std::string_view kTime = "2026-11-25T17:57:01.123Z";

std::string line(const AccessRecord& r, AccessLogFormat f) {
  std::string out;
  formatAccessRecord(r, f, kTime, out);
  return out;
}

AccessRecord poolServed() {
  AccessRecord r;
  r.request_id = "5f0c";
  r.client = "10.0.0.7";
  r.method = "GET";
  r.path = "/cpu/hash?n=1";
  r.route = "hash";
  r.status = 200;
  r.bytes = 312;
  r.duration_ns = 45'210'400;
  r.queue_ns = 3'002'000;
  r.upstream_ns = 42'181'999;
  r.target = "cpu/0";
  r.pool = "cpu";
  r.worker = 0;
  r.worker_pid = 7756;
  r.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  return r;
}

TEST(AccessLogFormat, TextIsLogfmtWithTheTimeFirst) {
  EXPECT_EQ(line(poolServed(), AccessLogFormat::Text),
            "2026-11-25T17:57:01.123Z request_id=5f0c client=10.0.0.7 method=GET "
            "path=\"/cpu/hash?n=1\" route=hash status=200 bytes=312 duration_ms=45.210 "
            "queue_ms=3.002 upstream_ms=42.182 target=cpu/0 pool=cpu worker=0 worker_pid=7756 "
            "overload=- trace_id=4bf92f3577b34da6a3ce929d0e0e4736 error=-");
}

TEST(AccessLogFormat, JsonHasTheSameFieldsInTheSameOrder) {
  auto j = nlohmann::ordered_json::parse(line(poolServed(), AccessLogFormat::Json));
  std::vector<std::string> keys;
  for (auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"time", "request_id", "client", "method", "path",
                                            "route", "status", "bytes", "duration_ms", "queue_ms",
                                            "upstream_ms", "target", "pool", "worker",
                                            "worker_pid", "overload", "trace_id", "error"}));
  EXPECT_EQ(j["time"], kTime);
  EXPECT_EQ(j["status"], 200);
  EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 45.21);
  EXPECT_EQ(j["worker_pid"], 7756);
  EXPECT_TRUE(j["overload"].is_null());
  EXPECT_TRUE(j["error"].is_null());
}

TEST(AccessLogFormat, AbsentValuesAndRefusals) {
  AccessRecord r;
  r.request_id = "abc";
  r.status = 400;
  r.bytes = 120;
  r.error = "request head does not end with CRLF CRLF";
  EXPECT_EQ(line(r, AccessLogFormat::Text),
            "2026-11-25T17:57:01.123Z request_id=abc client=- method=- path=- route=- status=400 "
            "bytes=120 duration_ms=- queue_ms=- upstream_ms=- target=- pool=- worker=- "
            "worker_pid=- overload=- trace_id=- error=\"request head does not end with CRLF "
            "CRLF\"");
  auto j = nlohmann::json::parse(line(r, AccessLogFormat::Json));
  EXPECT_TRUE(j["method"].is_null() && j["duration_ms"].is_null() && j["worker"].is_null());
  r.overload = "queue_full";
  r.queue_ns = 0;
  EXPECT_NE(line(r, AccessLogFormat::Text).find(" queue_ms=0.000 upstream_ms=- "),
            std::string::npos);
  EXPECT_NE(line(r, AccessLogFormat::Text).find(" overload=queue_full "), std::string::npos);
}

TEST(AccessLogFormat, AnyBytesInThePathStayValidJsonAndOneTextToken) {
  AccessRecord r;
  r.path = std::string_view("/caf\xc3\xa9/\"q\"\\ x=\xff\x01", 16);
  std::string json = line(r, AccessLogFormat::Json);
  auto j = nlohmann::json::parse(json);  // throws on invalid UTF-8
  EXPECT_EQ(j["path"], "/caf\xc3\xa9/\"q\"\\ x=\xc3\xbf\x01");  // \u00ff is U+00FF
  std::string text = line(r, AccessLogFormat::Text);
  EXPECT_NE(text.find("path=\"/caf\xc3\xa9/\\\"q\\\"\\\\ x=\\u00ff\\u0001\""), std::string::npos)
      << text;
}

TEST(AccessLogFormat, UtcTimeWithMilliseconds) {
  EXPECT_EQ(formatUtcMillis(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(formatUtcMillis(1'764'093'421'007), "2025-11-25T17:57:01.007Z");
}

TEST(TraceParent, WellFormedOnly) {
  EXPECT_EQ(traceIdOf("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "4bf92f3577b34da6a3ce929d0e0e4736");
  // A later version may append fields; version 00 may not.
  EXPECT_EQ(traceIdOf("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"),
            "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(traceIdOf("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz"), "");
  EXPECT_EQ(traceIdOf("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), "");
  EXPECT_EQ(traceIdOf("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), "");
  EXPECT_EQ(traceIdOf("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"), "");
  EXPECT_EQ(traceIdOf("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), "");
  EXPECT_EQ(traceIdOf("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"), "");
  EXPECT_EQ(traceIdOf(""), "");
}

}  // namespace
}  // namespace loopguard::proxy
