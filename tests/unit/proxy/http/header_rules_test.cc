#include "proxy/http/header_rules.h"

#include <gtest/gtest.h>

#include <string>

#include "proxy/http/request_target.h"

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

TEST(CheckRequestHead, TransferEncodingMustBeExactlyChunked) {
  auto te = [](std::initializer_list<std::pair<std::string_view, std::string_view>> extra) {
    HeaderMap h = headers({{"Host", "a"}});
    for (auto& [n, v] : extra) h.add(n, v);
    return checkRequestHead(facts("POST"), h);
  };
  EXPECT_FALSE(te({{"Transfer-Encoding", "chunked"}}));
  EXPECT_FALSE(te({{"Transfer-Encoding", "Chunked"}}));
  EXPECT_FALSE(te({{"Transfer-Encoding", " chunked ,"}}));  // empty list elements are allowed
  // Another coding would reach the app undecoded, framed as plain chunked: 501 (nginx too).
  EXPECT_EQ(te({{"Transfer-Encoding", "gzip, chunked"}}).status, 501);
  EXPECT_EQ(te({{"Transfer-Encoding", "identity"}, {"Transfer-Encoding", "chunked"}}).status, 501);
  EXPECT_EQ(te({{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}).status, 501);
  EXPECT_EQ(te({{"Transfer-Encoding", "chunked;q=1"}}).status, 501);
  EXPECT_EQ(te({{"Transfer-Encoding", "gzip"}}).status, 501);
  // Empty: no coding at all; next to Content-Length, ambiguous framing.
  EXPECT_EQ(te({{"Transfer-Encoding", ""}}).status, 400);
  EXPECT_EQ(te({{"Transfer-Encoding", " , "}}).status, 400);
  EXPECT_EQ(te({{"Transfer-Encoding", ""}, {"Content-Length", "5"}}).status, 400);
  EXPECT_EQ(te({{"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}}).status, 400);
  // HTTP/1.0 has no Transfer-Encoding, even an empty one.
  EXPECT_EQ(checkRequestHead(facts("POST", "/", 0), headers({{"Transfer-Encoding", ""}})).status,
            400);
}

TEST(CheckRequestHead, HostMustBeAValidUriHost) {
  for (std::string_view good : {"a", "api.example.com", "api.example.com:8080", "a:", "a_b.x",
                                "127.0.0.1:80", "[::1]", "[::1]:8080", "[2001:db8::7]", "xn--bcher-kva.ch",
                                "a(b)"}) {
    EXPECT_FALSE(checkRequestHead(facts(), headers({{"Host", good}}))) << good;
  }
  for (std::string_view bad : {"a b", "evil.com/path", "a\x01b", "a\tb", "a:99999", "a:x", "a:-1",
                               "a:1:2", ":80", "a%41", "[::1", "[::1]x", "[v1.x]", "[fe80::1%25e]", "a@b",
                               "a\\b", "caf\xC3\xA9", "a#b", "a?b"}) {
    HeadProblem p = checkRequestHead(facts(), headers({{"Host", bad}}));
    EXPECT_EQ(p.status, 400) << bad;
    EXPECT_STREQ(p.message, "invalid Host header") << bad;
  }
  // HTTP/1.0 may leave it out or empty, but what it sends must be valid.
  EXPECT_FALSE(checkRequestHead(facts("GET", "/", 0), headers({{"Host", ""}})));
  EXPECT_EQ(checkRequestHead(facts("GET", "/", 0), headers({{"Host", "a b"}})).status, 400);
}

TEST(CheckRequestHead, TargetFormsAndCharacters) {
  HeaderMap h = headers({{"Host", "a"}});
  EXPECT_FALSE(checkRequestHead(facts("GET", "/a?b=c&d=%20#f"), h));
  EXPECT_FALSE(checkRequestHead(facts("GET", "http://a.example/x"), h));
  EXPECT_FALSE(checkRequestHead(facts("GET", "https://a.example:8443"), h));
  EXPECT_FALSE(checkRequestHead(facts("OPTIONS", "*"), h));
  EXPECT_EQ(checkRequestHead(facts("GET", "*"), h).status, 400);
  EXPECT_EQ(checkRequestHead(facts("GET", "/caf\xC3\xA9"), h).status, 400);
  EXPECT_EQ(checkRequestHead(facts("GET", "/a\x80"), h).status, 400);
  EXPECT_EQ(checkRequestHead(facts("GET", "/a\x7f"), h).status, 400);
  EXPECT_EQ(checkRequestHead(facts("GET", "/a\x01"), h).status, 400);
  EXPECT_EQ(checkRequestHead(facts("GET", "ftp://a/x"), h).status, 400);
  EXPECT_EQ(checkRequestHead(facts("GET", "http:///x"), h).status, 400);
  EXPECT_EQ(checkRequestHead(facts("GET", "http://a b/x"), h).status, 400);
  EXPECT_EQ(checkRequestHead(facts("GET", "http://a:99999/x"), h).status, 400);
  HeadProblem userinfo = checkRequestHead(facts("GET", "http://u:p@a.example/x"), h);
  EXPECT_EQ(userinfo.status, 400);
  EXPECT_STREQ(userinfo.message, "userinfo in the request target");
}

TEST(RequestTarget, AbsoluteFormAuthorityReplacesHost) {
  HeaderMap h = headers({{"Host", "b.example"}});
  EXPECT_EQ(targetAuthority("http://a.example/x"), "a.example");
  EXPECT_EQ(targetAuthority("https://a.example:8443?q"), "a.example:8443");
  EXPECT_EQ(targetAuthority("http://[::1]:80#f"), "[::1]:80");
  EXPECT_EQ(targetAuthority("/x"), "");
  EXPECT_EQ(requestHost("http://a.example/x", h), "a.example");
  EXPECT_EQ(requestHost("/x", h), "b.example");
  EXPECT_EQ(requestHost("/x", headers({})), "");
}

TEST(HopByHop, StripsEveryNameInConnectionButNeverHost) {
  // Far more names than any fixed table would hold; every one of them goes.
  std::string connection = "close";
  HeaderMap h;
  for (int i = 0; i < 100; ++i) connection += ", X-H" + std::to_string(i);
  connection += ", Host, Content-Length, X-Forwarded-For, X-Request-Id";
  h.add("Connection", connection);
  HopByHop hop(h);
  EXPECT_TRUE(hop.connectionClose());
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(hop.drop("x-h" + std::to_string(i))) << i;
  EXPECT_FALSE(hop.drop("X-H100"));
  EXPECT_FALSE(hop.drop("X-H"));
  EXPECT_FALSE(hop.drop("Host"));
  EXPECT_FALSE(hop.drop("Content-Length"));
  EXPECT_FALSE(hop.drop("X-Forwarded-For"));
  EXPECT_FALSE(hop.drop("X-Request-Id"));

  HeaderMap h2 = headers({{"Connection", "Host, X-A"}, {"Proxy-Connection", "X-B"}});
  HopByHop few(h2);  // holds views into h2
  EXPECT_FALSE(few.drop("host"));
  EXPECT_TRUE(few.drop("x-a"));
  EXPECT_TRUE(few.drop("x-b"));
}

TEST(UpstreamRequestHead, HostComesFromTheAbsoluteFormAndSurvivesConnection) {
  HeaderMap h = headers({{"Accept", "*/*"}, {"Host", "b.example"}, {"Connection", "Host, X-A"},
                         {"X-A", "1"}});
  UpstreamRequestParams p;
  p.method = "GET";
  p.target = "http://a.example:8080/x";
  p.request_id = "r";
  p.fallback_host = "app";
  std::string out;
  writeUpstreamRequestHead(out, p, h);
  EXPECT_EQ(out,
            "GET http://a.example:8080/x HTTP/1.1\r\n"
            "Host: a.example:8080\r\n"
            "Accept: */*\r\n"
            "X-Forwarded-For: unix\r\n"
            "X-Forwarded-Proto: http\r\n"
            "X-Forwarded-Host: a.example:8080\r\n"
            "X-Request-Id: r\r\n"
            "\r\n");

  p.target = "/x";
  out.clear();
  writeUpstreamRequestHead(out, p, h);
  EXPECT_NE(out.find("\r\nHost: b.example\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\r\nX-Forwarded-Host: b.example\r\n"), std::string::npos) << out;
}

TEST(UpstreamRequestHead, Http10WithoutHostGetsTheFallbackHost) {
  UpstreamRequestParams p;
  p.method = "GET";
  p.target = "/x";
  p.request_id = "r";
  p.fallback_host = "app";
  std::string out;
  writeUpstreamRequestHead(out, p, headers({{"Host", ""}}));
  EXPECT_TRUE(out.starts_with("GET /x HTTP/1.1\r\nHost: app\r\n")) << out;
  EXPECT_EQ(out.find("X-Forwarded-Host"), std::string::npos) << out;  // the client named none
  EXPECT_EQ(out.find("Host", out.find("Host") + 1), std::string::npos) << out;

  p.fallback_host = {};
  out.clear();
  writeUpstreamRequestHead(out, p, headers({}));
  EXPECT_TRUE(out.starts_with("GET /x HTTP/1.1\r\nHost: localhost\r\n")) << out;
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
