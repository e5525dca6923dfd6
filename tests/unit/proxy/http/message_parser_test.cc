#include "proxy/http/message_parser.h"

#include <gtest/gtest.h>

#include <string>

namespace loopguard::http {
namespace {

struct Recorder : ParserEvents {
  int heads = 0;
  int completes = 0;
  std::string body;
  int head_result = 0;
  int onHeadComplete() override {
    ++heads;
    return head_result;
  }
  void onBodyData(const char* at, size_t len) override { body.append(at, len); }
  int onMessageComplete() override {
    ++completes;
    return kPauseParser;
  }
};

ParseResult feed(MessageParser& p, std::string_view s) { return p.execute(s.data(), s.size()); }

TEST(MessageParser, CollectsHeadAcrossSplitReads) {
  Recorder r;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  EXPECT_EQ(feed(p, "GET /a?b HTTP/1.1\r\nHo").status, ParseStatus::NeedMore);
  EXPECT_EQ(feed(p, "st: exa").status, ParseStatus::NeedMore);
  ParseResult res = feed(p, "mple  \r\nX-Empty:\r\n\r\n");
  EXPECT_EQ(res.status, ParseStatus::Paused);
  EXPECT_EQ(p.target(), "/a?b");
  EXPECT_EQ(p.headers().get("host"), "example");
  bool found = false;
  EXPECT_EQ(p.headers().get("x-empty", &found), "");
  EXPECT_TRUE(found);
  EXPECT_FALSE(p.sawLineFolding());
}

TEST(MessageParser, DetectsObsFold) {
  Recorder r;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  feed(p, "GET / HTTP/1.1\r\nHost: a\r\nX: one\r\n two\r\n\r\n");
  EXPECT_TRUE(p.sawLineFolding());
}

TEST(MessageParser, ValueSplitAcrossReadsIsNotAFold) {
  Recorder r;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  feed(p, "GET / HTTP/1.1\r\nHost: a\r\nX: one");
  feed(p, " two\r\n\r\n");
  EXPECT_FALSE(p.sawLineFolding());
  EXPECT_EQ(p.headers().get("x"), "one two");
}

TEST(MessageParser, HeadTooLarge) {
  Recorder r;
  MessageParser p(HTTP_REQUEST, r, 1024);
  std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(2000, 'a') + "\r\n\r\n";
  EXPECT_EQ(feed(p, big).status, ParseStatus::HeadTooLarge);
}

TEST(MessageParser, PausesAfterHeadThenStreamsBody) {
  Recorder r;
  r.head_result = kPauseParser;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  std::string msg = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET";
  ParseResult res = feed(p, msg);
  EXPECT_EQ(res.status, ParseStatus::Paused);
  EXPECT_EQ(r.heads, 1);
  EXPECT_TRUE(p.chunked());
  p.resume();
  std::string_view rest(msg.data() + res.consumed, msg.size() - res.consumed);
  ParseResult res2 = feed(p, rest);
  EXPECT_EQ(res2.status, ParseStatus::Paused);
  EXPECT_EQ(r.body, "abc");
  EXPECT_EQ(r.completes, 1);
  EXPECT_EQ(rest.substr(res2.consumed), "GET");
}

TEST(MessageParser, RejectsWhatStrictModeRejects) {
  for (std::string_view bad : {
           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
           "GET / HTTP/1.1\nHost: a\n\n",
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
           "\x16\x03\x01garbage\r\n\r\n",
       }) {
    Recorder r;
    MessageParser p(HTTP_REQUEST, r, 64 * 1024);
    EXPECT_EQ(feed(p, bad).status, ParseStatus::Error) << bad;
  }
}

ParseResult feedBytewise(MessageParser& p, std::string_view s, size_t* total_consumed) {
  ParseResult r;
  *total_consumed = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    r = p.execute(s.data() + i, 1);
    if (r.status != ParseStatus::NeedMore) {
      *total_consumed += r.consumed;
      return r;
    }
    *total_consumed += 1;
  }
  return r;
}

// A request head refused before any head callback, fed whole and one byte per read; with a
// `reason`, for that reason.
void expectHeadRefused(std::string_view bad, const char* reason = nullptr) {
  for (bool bytewise : {false, true}) {
    Recorder r;
    MessageParser p(HTTP_REQUEST, r, 64 * 1024);
    size_t consumed = 0;
    ParseResult res = bytewise ? feedBytewise(p, bad, &consumed) : feed(p, bad);
    const char* how = bytewise ? " (byte by byte)" : " (whole)";
    EXPECT_EQ(res.status, ParseStatus::Error) << bad << how;
    EXPECT_EQ(r.heads, 0) << bad << how;
    ASSERT_NE(res.reason, nullptr) << bad << how;
    if (reason != nullptr) {
      EXPECT_STREQ(res.reason, reason) << bad << how;
    }
  }
}

TEST(MessageParser, EveryRequestHeadLineEndsInCrlf) {
  // llhttp 8.1 accepts the first two (strict mode and all): the head check does not.
  for (std::string_view bad : {
           "GET / HTTP/1.1\nHost: a\r\n\r\n",        // bare LF ending the request line
           "GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",  // ... a header line
           "GET / HTTP/1.1\r\nHost: a\r\n\n",        // ... the head
           "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",    // ... an empty line before it
           "GET / HTTP/1.1\rHost: a\r\n\r\n",        // CR alone
           "GET / HTTP/1.1\r\n Host: a\r\n\r\n",     // whitespace before the first field
       }) {
    expectHeadRefused(bad);
  }
  Recorder r;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  EXPECT_EQ(feed(p, "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").status, ParseStatus::Paused);
  EXPECT_EQ(r.heads, 1);  // empty lines (CRLF) before a request line are skipped (RFC 9112 2.2)
}

// Found by the differential fuzz target (tests/fuzz/regressions/differential/): llhttp 8.1 takes
// each of these, every lenient flag off.
TEST(MessageParser, RequestLineHasExactlyOneSpBetweenItsParts) {
  for (std::string_view bad : {
           "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",     // two SP before the target
           "GET /  HTTP/1.1\r\nHost: a\r\n\r\n",     // ... before the version
           "GET   /   HTTP/1.1\r\nHost: a\r\n\r\n",
           " GET / HTTP/1.1\r\nHost: a\r\n\r\n",     // SP before the method
           "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",     // ... after the version
           "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n",    // a fourth part
           "GET /\r\nHost: a\r\n\r\n",               // two parts (HTTP/0.9 style)
       }) {
    expectHeadRefused(bad, "request line parts not separated by exactly one SP");
  }
  Recorder r;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  size_t consumed = 0;
  EXPECT_EQ(feedBytewise(p, "OPTIONS * HTTP/1.1\r\nHost: a  b\r\nX:  1 \r\n\r\n", &consumed).status,
            ParseStatus::Paused);  // SP runs inside field values are fine
  EXPECT_EQ(p.headers().get("x"), "1");
}

TEST(MessageParser, NoBareCrAnywhereInARequestHead) {
  for (std::string_view bad : {
           "GET / HTTP/1.1\r\nHost: a\r\nX-A:\rZX-Injected: 1\r\n\r\n",  // llhttp: two fields
           "GET / HTTP/1.1\r\nHost: a\r\nX-A: \rZX-Injected: 1\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nX-A: v\rw\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nX-A: v\r\r\n\r\n",
           "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
           "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",   // not an empty line before the request
           "\r\n\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\n\rX: 1\r\n\r\n",  // CR alone where the head ends
       }) {
    expectHeadRefused(bad, "CR not followed by LF in the request head");
  }
  // A read that ends between the CR and the LF of a line.
  Recorder r;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  EXPECT_EQ(feed(p, "GET / HTTP/1.1\r").status, ParseStatus::NeedMore);
  EXPECT_EQ(feed(p, "\nHost: a\r").status, ParseStatus::NeedMore);
  EXPECT_EQ(feed(p, "\nX-A:\r").status, ParseStatus::NeedMore);
  EXPECT_EQ(feed(p, "\n\r\n").status, ParseStatus::Paused);
  EXPECT_EQ(p.headers().size(), 2u);
}

// Found by the differential fuzz target: trailers appended to headers() were written upstream as
// header fields when a buffered request's head went out after its body.
TEST(MessageParser, TrailersNeverBecomeHeaderFields) {
  {
    // A chunked request the proxy decodes itself.
    Recorder r;
    MessageParser p(HTTP_REQUEST, r, 64 * 1024);
    ParseResult res = feed(p, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "1\r\nx\r\n0\r\nHost: evil\r\nX-Injected: 1\r\n\r\n");
    EXPECT_EQ(res.status, ParseStatus::Paused);
    EXPECT_EQ(r.completes, 1);
    EXPECT_EQ(p.headers().size(), 2u);
    EXPECT_EQ(p.headers().count(HeaderId::Host), 1u);
  }
  {
    // An upgrade request with a chunked body: llhttp decodes that one.
    Recorder r;
    MessageParser p(HTTP_REQUEST, r, 64 * 1024);
    ParseResult res = feed(p, "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
                              "Upgrade: h2c\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "1\r\nx\r\n0\r\nHost: evil\r\nX-Injected: 1\r\n\r\n");
    EXPECT_EQ(res.status, ParseStatus::Paused);  // after the message, before the new protocol
    EXPECT_TRUE(p.upgradeRequested());
    EXPECT_EQ(r.completes, 1);
    EXPECT_EQ(r.body, "x");
    EXPECT_EQ(p.headers().size(), 4u);
    EXPECT_EQ(p.headers().get("x-injected"), "");
    EXPECT_EQ(p.headers().get(HeaderId::Host), "a");
  }
  {
    // A response, and its trailers count against the head limit.
    Recorder r;
    MessageParser p(HTTP_RESPONSE, r, 64);
    ParseResult res = feed(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "1\r\nx\r\n0\r\nX-T: 1\r\n\r\n");
    EXPECT_EQ(res.status, ParseStatus::Paused);
    EXPECT_EQ(r.completes, 1);
    EXPECT_EQ(p.headers().size(), 1u);
    p.resume();
    p.reset();
    res = feed(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: " +
                      std::string(100, 'a') + "\r\n\r\n");
    EXPECT_EQ(res.status, ParseStatus::HeadTooLarge);
  }
}

TEST(MessageParser, ObsFoldWithAnEmptyFirstLineIsRefusedNotUnfolded) {
  // llhttp reads "Transfer-Encoding:\r\n chunked" as chunked: never act on it.
  for (std::string_view bad : {
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 5\r\n\r\nhello",
           "GET / HTTP/1.1\r\nHost:\r\n a\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\tb\r\n\r\n",
       }) {
    Recorder r;
    MessageParser p(HTTP_REQUEST, r, 64 * 1024);
    ParseResult res = feed(p, bad);
    EXPECT_EQ(res.status, ParseStatus::Error) << bad;
    EXPECT_STREQ(res.reason, "obsolete line folding in a header");
    EXPECT_TRUE(p.sawLineFolding());
    EXPECT_EQ(r.heads, 0);
  }
}

TEST(MessageParser, ResponsesKeepLlhttpsLineRules) {
  Recorder r;
  MessageParser p(HTTP_RESPONSE, r, 64 * 1024);
  EXPECT_EQ(feed(p, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").status, ParseStatus::Paused);
  EXPECT_EQ(r.completes, 1);
}

TEST(MessageParser, Http2PrefaceIs505) {
  Recorder r;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  ParseResult res = feed(p, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  EXPECT_EQ(res.status, ParseStatus::Error);
  EXPECT_EQ(res.error_status, 505);
  Recorder r2;
  MessageParser p2(HTTP_REQUEST, r2, 64 * 1024);
  EXPECT_EQ(feed(p2, "G{T / HTTP/1.1\r\n\r\n").error_status, 400);
}

TEST(MessageParser, ResetForgetsTheLastHeadWasTooLarge) {
  // A pooled parser serves the next connection after reset(): its malformed request is a 400,
  // not the 431 of the one before.
  Recorder r;
  MessageParser p(HTTP_REQUEST, r, 64);
  std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(200, 'a') + "\r\n\r\n";
  EXPECT_EQ(feed(p, big).status, ParseStatus::HeadTooLarge);
  p.reset();
  EXPECT_EQ(feed(p, "G{T / HTTP/1.1\r\n\r\n").status, ParseStatus::Error);
  p.reset();
  EXPECT_EQ(feed(p, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").status, ParseStatus::Paused);
  EXPECT_EQ(r.heads, 1);
}

TEST(MessageParser, ChunkExtensionsWithBwsAreDecoded) {
  for (std::string_view body : {"3 ;a=b\r\nabc\r\n0\r\n\r\n", "3\t; a = \"q\\\"x\"\r\nabc\r\n0;z\r\n\r\n",
                                "3;a;b=c\r\nabc\r\n0\r\nT: v\r\n\r\n"}) {
    Recorder r;
    MessageParser p(HTTP_REQUEST, r, 64 * 1024);
    std::string msg = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    msg += body;
    msg += "GET";
    ParseResult res = feed(p, msg);
    EXPECT_EQ(res.status, ParseStatus::Paused) << body << " " << (res.reason ? res.reason : "");
    EXPECT_EQ(r.body, "abc") << body;
    EXPECT_EQ(r.completes, 1) << body;
    EXPECT_EQ(msg.substr(res.consumed), "GET") << body;
  }
}

TEST(MessageParser, InvalidChunkedBodiesAreStillRefused) {
  for (std::string_view body : {"3 \r\nabc\r\n0\r\n\r\n", "3;\r\nabc\r\n0\r\n\r\n", "3;a=\r\nabc\r\n",
                                "3;a b\r\nabc\r\n", "3\r\nabcX\r\n", "3\nabc\r\n", "zz\r\n",
                                "0\r\nT v\r\n\r\n", "0\r\n T: v\r\n\r\n", "0\r\n\n"}) {
    Recorder r;
    r.head_result = kPauseParser;
    MessageParser p(HTTP_REQUEST, r, 64 * 1024);
    std::string msg = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    msg += body;
    ParseResult head = feed(p, msg);
    ASSERT_EQ(head.status, ParseStatus::Paused);
    p.resume();
    ParseResult res = feed(p, std::string_view(msg).substr(head.consumed));
    EXPECT_EQ(res.status, ParseStatus::Error) << body;
    EXPECT_EQ(r.completes, 0) << body;
  }
}

TEST(MessageParser, ChunkedBodyByteByByteThenThePipelinedRequest) {
  Recorder r;
  r.head_result = kPauseParser;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  std::string msg =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5 ; x = y\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n";
  size_t consumed = 0;
  ParseResult res = feedBytewise(p, msg, &consumed);
  ASSERT_EQ(res.status, ParseStatus::Paused);
  EXPECT_TRUE(p.inMessage());
  p.resume();
  res = feedBytewise(p, std::string_view(msg).substr(consumed), &consumed);
  EXPECT_EQ(res.status, ParseStatus::Paused);
  EXPECT_EQ(r.body, "hello!");
  EXPECT_EQ(r.completes, 1);
  EXPECT_FALSE(p.inMessage());
  EXPECT_TRUE(p.keepAlive());

  // The connection goes on with the next request on the same parser.
  p.resume();
  p.reset();
  r.head_result = 0;
  ParseResult next = feed(p, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(next.status, ParseStatus::Paused);
  EXPECT_EQ(p.target(), "/next");
  EXPECT_EQ(r.completes, 2);
}

TEST(MessageParser, ChunkedBodyCutShortIsNotFinished) {
  Recorder r;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  EXPECT_EQ(feed(p, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel").status,
            ParseStatus::NeedMore);
  EXPECT_EQ(r.body, "hel");
  EXPECT_FALSE(p.finish());
}

TEST(MessageParser, ARequestParserStopsAfterEachMessage) {
  // Even when the events would go on: the next head must be checked from its first byte.
  struct GoOn : Recorder {
    int onMessageComplete() override {
      ++completes;
      return 0;
    }
  } r;
  MessageParser p(HTTP_REQUEST, r, 64 * 1024);
  std::string two = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\nHost: a\r\n\r\n";
  ParseResult res = feed(p, two);
  EXPECT_EQ(res.status, ParseStatus::Paused);
  EXPECT_EQ(r.completes, 1);
  p.resume();
  p.reset();
  EXPECT_EQ(feed(p, std::string_view(two).substr(res.consumed)).status, ParseStatus::Error);
}

}  // namespace
}  // namespace loopguard::http
