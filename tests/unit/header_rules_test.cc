#include "proxy/http/header_rules.h"

#include <gtest/gtest.h>

namespace loopguard::http {
namespace {

HeaderMap headers(std::initializer_list<std::pair<std::string_view, std::string_view>> list) {
  HeaderMap h;
  for (auto& [n, v] : list) h.add(n, v);
  return h;
}

RequestFacts facts(std::string_view method = "GET", std::string_view target = "/", int minor = 1) {
  RequestFacts f;
  f.method = method;
  f.target = target;
  f.http_minor = minor;
  return f;
}

TEST(CheckRequestHead, AcceptsAnOrdinaryRequest) {
  EXPECT_FALSE(checkRequestHead(facts(), headers({{"Host", "a"}})));
}

TEST(CheckRequestHead, RequiresExactlyOneHostOnHttp11) {
  EXPECT_EQ(checkRequestHead(facts(), headers({})).status, 400);
  EXPECT_EQ(checkRequestHead(facts(), headers({{"Host", "a"}, {"host", "b"}})).status, 400);
  EXPECT_EQ(checkRequestHead(facts(), headers({{"Host", ""}})).status, 400);
  EXPECT_FALSE(checkRequestHead(facts("GET", "/", 0), headers({})));
}

TEST(CheckRequestHead, RejectsBadVersionsFoldingNamesAndTe10) {
  RequestFacts f = facts();
  f.http_major = 0;
  f.http_minor = 9;
  EXPECT_EQ(checkRequestHead(f, headers({{"Host", "a"}})).status, 400);
  f.http_major = 2;
  f.http_minor = 0;
  EXPECT_EQ(checkRequestHead(f, headers({{"Host", "a"}})).status, 505);
  f = facts();
  f.saw_line_folding = true;
  EXPECT_EQ(checkRequestHead(f, headers({{"Host", "a"}})).status, 400);
  EXPECT_EQ(checkRequestHead(facts(), headers({{"Host", "a"}, {"Bad Name", "x"}})).status, 400);
  EXPECT_EQ(checkRequestHead(facts(), headers({{"Host", "a"}, {"Host ", "x"}})).status, 400);
  f = facts("POST", "/", 0);
  f.has_transfer_encoding = true;
  EXPECT_EQ(checkRequestHead(f, headers({})).status, 400);
  EXPECT_EQ(checkRequestHead(facts("CONNECT", "a:443"), headers({{"Host", "a"}})).status, 405);
  EXPECT_EQ(checkRequestHead(facts("GET", "noslash"), headers({{"Host", "a"}})).status, 400);
}

TEST(HopByHop, DropsFixedListAndConnectionNamedHeaders) {
  HeaderMap h = headers({{"Connection", "close, X-Foo"}, {"X-Foo", "1"}, {"Keep-Alive", "5"}});
  HopByHop hop(h);
  EXPECT_TRUE(hop.connectionClose());
  EXPECT_TRUE(hop.drop("x-foo"));
  EXPECT_TRUE(hop.drop("keep-alive"));
  EXPECT_TRUE(hop.drop("TE"));
  EXPECT_TRUE(hop.drop("Upgrade"));
  EXPECT_FALSE(hop.drop("X-Bar"));
}

TEST(UpstreamRequestHead, RewritesFramingForwardingAndRequestId) {
  HeaderMap h = headers({{"Host", "api.example.com"},
                         {"X-Forwarded-For", "1.1.1.1"},
                         {"x-forwarded-for", "2.2.2.2"},
                         {"Connection", "keep-alive, content-length, X-Secret"},
                         {"X-Secret", "s"},
                         {"Content-Length", "5"},
                         {"X-Request-Id", "client-id"},
                         {"Accept", "*/*"}});
  UpstreamRequestParams p;
  p.method = "POST";
  p.target = "/a?b=1";
  p.client_ip = "10.0.0.9";
  p.request_id = "client-id";
  p.framing = BodyFraming::ContentLength;
  p.content_length = 5;
  std::string out;
  writeUpstreamRequestHead(out, p, h);
  EXPECT_EQ(out,
            "POST /a?b=1 HTTP/1.1\r\n"
            "Host: api.example.com\r\n"
            "Accept: */*\r\n"
            "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\n"
            "X-Forwarded-Proto: http\r\n"
            "X-Forwarded-Host: api.example.com\r\n"
            "X-Request-Id: client-id\r\n"
            "Content-Length: 5\r\n"
            "\r\n");
}

TEST(UpstreamRequestHead, ChunkedAndWebsocket) {
  HeaderMap h = headers({{"Host", "h"}, {"Transfer-Encoding", "chunked"}, {"Upgrade", "websocket"},
                         {"Connection", "Upgrade"}, {"Sec-WebSocket-Key", "k"}});
  UpstreamRequestParams p;
  p.method = "GET";
  p.target = "/ws";
  p.request_id = "r";
  p.framing = BodyFraming::Chunked;
  p.websocket_upgrade = true;
  std::string out;
  writeUpstreamRequestHead(out, p, h);
  EXPECT_NE(out.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_NE(out.find("Connection: upgrade\r\nUpgrade: websocket\r\n"), std::string::npos);
  EXPECT_NE(out.find("Sec-WebSocket-Key: k\r\n"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-For: unix\r\n"), std::string::npos);
  EXPECT_EQ(out.find("Transfer-Encoding: chunked\r\nTransfer"), std::string::npos);
}

TEST(ClientResponseHead, KeepsRequestIdAndWritesOwnFraming) {
  HeaderMap h = headers({{"Content-Type", "text/plain"}, {"Transfer-Encoding", "chunked"},
                         {"Connection", "keep-alive"}, {"Keep-Alive", "timeout=5"}});
  ClientResponseParams p;
  p.status = 200;
  p.request_id = "rid";
  p.framing = BodyFraming::ContentLength;
  p.content_length = 12;
  p.keep_alive = false;
  std::string out;
  writeClientResponseHead(out, p, h);
  EXPECT_EQ(out,
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/plain\r\n"
            "X-Request-Id: rid\r\n"
            "Connection: close\r\n"
            "Content-Length: 12\r\n"
            "\r\n");
}

TEST(ClientResponseHead, Http10KeepAliveIsExplicit) {
  ClientResponseParams p;
  p.client_minor = 0;
  p.framing = BodyFraming::ContentLength;
  std::string out;
  writeClientResponseHead(out, p, HeaderMap());
  EXPECT_EQ(out.rfind("HTTP/1.0 200 OK\r\n", 0), 0u);
  EXPECT_NE(out.find("Connection: keep-alive\r\n"), std::string::npos);
}

TEST(ErrorResponse, JsonBodyAndOverloadHeaders) {
  ErrorResponse e;
  e.status = 503;
  e.error = "route queue is full";
  e.route = "hash";
  e.request_id = "id\"1";
  e.overload_reason = "queue_full";
  e.retry_after_seconds = 5;
  std::string out;
  writeErrorResponse(out, e);
  EXPECT_EQ(out.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u);
  EXPECT_NE(out.find("Retry-After: 5\r\n"), std::string::npos);
  EXPECT_NE(out.find("X-Loopguard-Overload: queue_full\r\n"), std::string::npos);
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
  std::string body = "{\"error\": \"route queue is full\", \"route\": \"hash\", \"request_id\": \"id\\\"1\"}\n";
  EXPECT_NE(out.find("Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body),
            std::string::npos);
}

TEST(Numbers, DecimalAndHex) {
  std::string s;
  appendDecimal(s, 0);
  appendDecimal(s, 1234567890123ull);
  appendHex(s, 0);
  appendHex(s, 0xabc10);
  EXPECT_EQ(s, "01234567890123" "0" "abc10");
}

TEST(Tokens, ForEachTokenTrims) {
  std::vector<std::string> got;
  forEachToken(" a ,b,, c\t", [&](std::string_view t) { got.emplace_back(t); });
  EXPECT_EQ(got, (std::vector<std::string>{"a", "b", "c"}));
}

}  // namespace
}  // namespace loopguard::http
