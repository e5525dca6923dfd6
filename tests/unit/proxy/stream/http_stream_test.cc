#include "proxy/stream/http_stream.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/unit/support/loop_runner.h"
#include "tests/unit/support/socket_pair.h"

namespace loopguard::proxy {
namespace {

using loopguard::testing::runUntil;
using loopguard::testing::step;

// Records what a stream tells its driver; pauses after every head and message end.
struct Recorder : StreamHandler {
  http::ParserAction onStreamHead(HttpStream& s) override {
    heads.push_back(std::string(s.parser().method()) + " " + s.parser().target());
    return http::ParserAction::Pause;
  }
  http::ParserAction onStreamBody(HttpStream&, const char* at, size_t len) override {
    body.append(at, len);
    return forward_to != nullptr ? forward(at, len) : http::ParserAction::Continue;
  }
  http::ParserAction onStreamMessageEnd(HttpStream&) override {
    ++messages;
    return http::ParserAction::Pause;
  }
  void onStreamParsed(HttpStream& s, const http::ParseResult& r) override {
    results.push_back(r.status);
    if (forward_to != nullptr) forward_to->flush();
    (void)s;
  }
  void onStreamData(HttpStream& s) override {
    raw.append(s.input());
    s.consume(s.input().size());
  }
  void onStreamWritten(HttpStream&, int status) override { written.push_back(status); }
  void onStreamEof(HttpStream&, int status) override { eof = status; }
  void onStreamClosed(HttpStream&) override { ++closed; }

  http::ParserAction forward(const char* at, size_t len) {
    forward_to->out().addData(at, len);
    forward_to->borrow(*source);
    return http::ParserAction::Continue;
  }

  std::vector<std::string> heads;
  std::string body;
  std::string raw;
  int messages = 0;
  std::vector<http::ParseStatus> results;
  std::vector<int> written;
  int eof = 0;
  int closed = 0;
  HttpStream* forward_to = nullptr;  // body spans go there, borrowed
  HttpStream* source = nullptr;
};

// A stream over one end of a socketpair; the test plays the peer on the other end.
struct Side {
  Side(uv::Loop& loop, net::BufferPool& buffers, Recorder& h, llhttp_type_t type)
      : owner(h), parts(type, 64 * 1024), stream(loop.get(), buffers, h) {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
    EXPECT_EQ(stream.socket().open(fds[0]), 0);
    stream.attach(parts);
  }
  ~Side() {
    if (fds[1] >= 0) ::close(fds[1]);
  }
  void send(std::string_view bytes) { ASSERT_EQ(::write(fds[1], bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size())); }
  std::string received() { return loopguard::testing::readAvailable(fds[1]); }
  void hangUp() {
    ::close(fds[1]);
    fds[1] = -1;
  }
  // Closes the stream and waits for its close callback (pending writes complete first).
  void close(uv::Loop& loop) {
    stream.close(owner);
    EXPECT_EQ(owner.closed, 0);  // from the close callback
    ASSERT_TRUE(runUntil(loop, [&] { return owner.closed == 1; }));
  }

  int fds[2] = {-1, -1};
  Recorder& owner;
  StreamParts parts;
  HttpStream stream;
};

struct StreamTest : ::testing::Test {
  uv::Loop loop;
  net::BufferPool buffers{4};
};

TEST_F(StreamTest, ParsesAHeadAndWaitsToBeResumed) {
  Recorder r;
  {
    Side s(loop, buffers, r, HTTP_REQUEST);
    s.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    s.stream.resume();
    ASSERT_TRUE(runUntil(loop, [&] { return r.heads.size() == 1; }));
    EXPECT_EQ(r.heads[0], "GET /a");
    step(loop);
    EXPECT_EQ(r.heads.size(), 1u);  // paused: the pipelined one waits
    s.stream.resume();              // after the head: the message (no body) ends
    EXPECT_EQ(r.messages, 1);
    s.stream.parser().reset();
    s.stream.resume();
    EXPECT_EQ(r.heads.size(), 2u);
    EXPECT_EQ(r.heads[1], "GET /b");
    s.close(loop);
  }
  EXPECT_EQ(loop.close(), 0);
}

TEST_F(StreamTest, DeliversTheBodyAndTheEndOfTheMessage) {
  Recorder r;
  {
    Side s(loop, buffers, r, HTTP_REQUEST);
    s.send("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello");
    s.stream.resume();
    ASSERT_TRUE(runUntil(loop, [&] { return r.heads.size() == 1; }));
    s.stream.resume();
    ASSERT_TRUE(runUntil(loop, [&] { return r.body == "hello"; }));
    EXPECT_EQ(r.messages, 0);
    s.send(" world");
    ASSERT_TRUE(runUntil(loop, [&] { return r.messages == 1; }));
    EXPECT_EQ(r.body, "hello world");
    s.close(loop);
  }
  EXPECT_EQ(loop.close(), 0);
}

// The completion rule: even when the kernel takes the whole write at once, the completion comes
// from the loop, not from inside flush().
TEST_F(StreamTest, AWriteTheKernelTakesAtOnceCompletesFromTheLoop) {
  Recorder r;
  {
    Side s(loop, buffers, r, HTTP_RESPONSE);
    s.stream.out().addFrame("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    s.stream.flush();
    EXPECT_TRUE(s.stream.writing());
    EXPECT_TRUE(r.written.empty());
    EXPECT_FALSE(s.stream.busy());  // the kernel has it: more may go out behind it
    s.stream.out().addFrame("HTTP/1.1 204 No Content\r\n\r\n");
    s.stream.flush();  // joins the first: one completion covers both
    EXPECT_TRUE(r.written.empty());
    step(loop);
    EXPECT_EQ(r.written, (std::vector<int>{0}));
    EXPECT_FALSE(s.stream.writing());
    EXPECT_EQ(s.received(),
              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
              "HTTP/1.1 204 No Content\r\n\r\n");
    s.close(loop);
  }
  EXPECT_EQ(loop.close(), 0);
}

TEST_F(StreamTest, AWriteThePeerDoesNotReadCompletesOnceItDoes) {
  Recorder r;
  {
    Side s(loop, buffers, r, HTTP_RESPONSE);
    std::string big(8 << 20, 'x');
    s.stream.out().addOwned(big);
    s.stream.flush();
    step(loop);
    EXPECT_TRUE(r.written.empty());  // the socket buffer is full
    std::string got;
    ASSERT_TRUE(runUntil(loop, [&] {
      got += s.received();
      return !r.written.empty();
    }));
    got += s.received();
    EXPECT_EQ(r.written, (std::vector<int>{0}));
    EXPECT_EQ(got.size(), big.size());
    s.close(loop);
  }
  EXPECT_EQ(loop.close(), 0);
}

// Body bytes are relayed without a copy: the receiving side's read block is lent to the other
// side's write, and goes back to the pool as soon as the kernel has the bytes.
TEST_F(StreamTest, ABorrowedReadBlockIsFreeOnceTheKernelHasTheBytes) {
  Recorder in_events, out_events;
  {
    Side in(loop, buffers, in_events, HTTP_REQUEST);
    Side out(loop, buffers, out_events, HTTP_RESPONSE);
    in_events.forward_to = &out.stream;
    in_events.source = &in.stream;
    in.send("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody");
    in.stream.resume();
    ASSERT_TRUE(runUntil(loop, [&] { return in_events.heads.size() == 1; }));
    in.stream.resume();  // the body is parsed into out's batch, borrowed; the round flushes
    EXPECT_EQ(in_events.messages, 1);
    EXPECT_TRUE(out.stream.writing());
    // The kernel took the write whole: in's block (all its input consumed) is free already,
    // though the write's completion is still to come from the loop.
    EXPECT_EQ(buffers.blocksInUse(net::BufferPool::Size::Small), 0u);
    EXPECT_TRUE(out_events.written.empty());
    step(loop);
    EXPECT_EQ(out_events.written, (std::vector<int>{0}));
    EXPECT_EQ(out.received(), "body");
    in.close(loop);
    out.close(loop);
  }
  EXPECT_EQ(loop.close(), 0);
}

TEST_F(StreamTest, MalformedInputEndsTheRoundWithAnError) {
  Recorder r;
  {
    Side s(loop, buffers, r, HTTP_REQUEST);
    s.send("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n");
    s.stream.resume();
    ASSERT_TRUE(runUntil(loop, [&] { return !r.results.empty(); }));
    EXPECT_EQ(r.results.back(), http::ParseStatus::Error);
    EXPECT_TRUE(s.stream.paused());
    EXPECT_TRUE(r.heads.empty());
    s.close(loop);
  }
  EXPECT_EQ(loop.close(), 0);
}

TEST_F(StreamTest, ThePeerClosingIsReportedAndRawBytesAreAnnounced) {
  Recorder r;
  {
    Side s(loop, buffers, r, HTTP_RESPONSE);
    s.stream.setRaw();
    s.send("tunnel bytes");
    ASSERT_TRUE(runUntil(loop, [&] { return r.raw == "tunnel bytes"; }));
    s.hangUp();
    ASSERT_TRUE(runUntil(loop, [&] { return r.eof != 0; }));
    EXPECT_EQ(r.eof, UV_EOF);
    EXPECT_TRUE(s.stream.peerClosed());
    s.close(loop);
  }
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace loopguard::proxy
