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

}  // namespace
}  // namespace loopguard::http
