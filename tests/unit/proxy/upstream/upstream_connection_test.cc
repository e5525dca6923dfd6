// UpstreamConnection over one end of a socketpair (the test plays the app on the other end):
// the exchange drives its HttpStream while attached, the connection itself between requests.
#include "proxy/upstream/upstream_connection.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "tests/unit/support/loop_runner.h"
#include "tests/unit/support/socket_pair.h"

namespace loopguard::upstream {
namespace {

using loopguard::testing::runUntil;
using loopguard::testing::step;

// The pool the connection belongs to: holds it, counts what it is told, and retires it when it
// is gone, as a ConnectionPool does.
struct FakeOwner final : ConnectionOwner {
  explicit FakeOwner(uv_loop_t* l) : loop(l) {}
  void onConnectResult(UpstreamConnection*, int) override {}
  void onIdleClosed(UpstreamConnection*) override { ++idle_closed; }
  void onConnectionGone(UpstreamConnection* c) override {
    ++gone;
    connections.retire(loop, *c);
  }
  uv_loop_t* loop;
  ConnectionSet connections;
  int idle_closed = 0;
  int gone = 0;
};

// What an Exchange is to the connection: records the response; pauses at its end.
struct FakeExchange final : UpstreamStreamHandler {
  http::ParserAction onStreamHead(proxy::HttpStream& s) override {
    statuses.push_back(s.parser().statusCode());
    return http::ParserAction::Continue;
  }
  http::ParserAction onStreamBody(proxy::HttpStream&, const char* at, size_t len) override {
    body.append(at, len);
    return http::ParserAction::Continue;
  }
  http::ParserAction onStreamMessageEnd(proxy::HttpStream&) override {
    ++messages;
    return http::ParserAction::Pause;
  }
  void onStreamParsed(proxy::HttpStream&, const http::ParseResult&) override { ++rounds; }
  void onStreamWritten(proxy::HttpStream&, int status) override { written.push_back(status); }
  void onStreamEof(proxy::HttpStream&, int) override { ++eofs; }
  void onUpstreamFailed(UpstreamErrorKind, const char* w) override { why = w; }

  std::vector<int> statuses;
  std::string body;
  int messages = 0;
  int rounds = 0;
  std::vector<int> written;
  int eofs = 0;
  const char* why = nullptr;
};

struct UpstreamConnectionTest : ::testing::Test {
  // A connection whose socket is one end of a socketpair, idle in its (fake) pool.
  // Its pool's deadlines: connect 5 s, idle `idle_ms`, keeping its parts `keep_parts_ms` of it.
  UpstreamConnection* open(uint64_t idle_ms = 60'000,
                           uint64_t keep_parts_ms = UpstreamTimeouts::kKeepPartsMs) {
    deadlines.emplace(loop.get(), 5'000, idle_ms, keep_parts_ms);
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
    UpstreamConnection* c =
        &owner.connections.emplaceIn(loop.slab(sizeof(UpstreamConnection)), loop.get(), buffers,
                                     owner, *deadlines, "app");
    EXPECT_EQ(c->socket().open(fds[0]), 0);
    c->becomeIdle();
    return c;
  }
  void send(std::string_view bytes) {
    ASSERT_EQ(::write(fds[1], bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
  std::string received() { return loopguard::testing::readAvailable(fds[1]); }
  // A connection in use by `x`, its response parsed as it comes.
  UpstreamConnection* openFor(UpstreamStreamHandler& x) {
    UpstreamConnection* c = open();
    c->attach(x, 64 * 1024);
    return c;
  }
  // The connection's close callback ran (its owner retired it; the pool heard of it as idle
  // `idle_closed` times), it was deleted, and the loop has nothing left.
  void expectGoneAndLoopClosed(int idle_closed) {
    ASSERT_TRUE(runUntil(loop, [&] { return owner.gone == 1; }));
    EXPECT_EQ(owner.idle_closed, idle_closed);
    EXPECT_TRUE(owner.connections.empty());
    deadlines.reset();  // the pool's queues go with the pool
    EXPECT_EQ(loop.close(), 0);
  }
  void TearDown() override {
    if (fds[1] >= 0) ::close(fds[1]);
  }

  uv::Loop loop;
  net::BufferPool buffers{4};
  std::optional<UpstreamTimeouts> deadlines;
  FakeOwner owner{loop.get()};
  int fds[2] = {-1, -1};
};

TEST_F(UpstreamConnectionTest, TheExchangeDrivesTheStreamAndTheParserServesTheNextRequest) {
  FakeExchange x;
  UpstreamConnection* c = open();
  for (int i = 0; i < 2; ++i) {
    c->attach(x, 64 * 1024);
    c->stream().out().addFrame("GET / HTTP/1.1\r\nHost: app\r\n\r\n");
    c->stream().flush();
    EXPECT_TRUE(x.written.size() == static_cast<size_t>(i));  // never from inside flush()
    ASSERT_TRUE(runUntil(loop, [&] { return x.written.size() == static_cast<size_t>(i + 1); }));
    EXPECT_EQ(x.written.back(), 0);
    EXPECT_EQ(received(), "GET / HTTP/1.1\r\nHost: app\r\n\r\n");
    c->stream().resume();
    send(i == 0 ? "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                : "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    ASSERT_TRUE(runUntil(loop, [&] { return x.messages == i + 1; }));
    c->detach();
    c->becomeIdle();
  }
  EXPECT_EQ(x.statuses, (std::vector<int>{200, 404}));
  EXPECT_EQ(x.body, "hello");
  c->close();
  expectGoneAndLoopClosed(0);
}

// One request on `c`: written, answered with `response`, parsed to its end.
void serveOne(UpstreamConnectionTest& t, UpstreamConnection* c, FakeExchange& x,
              std::string_view response) {
  const int before = x.messages;
  c->attach(x, 64 * 1024);
  c->stream().out().addFrame("GET / HTTP/1.1\r\nHost: app\r\n\r\n");
  c->stream().flush();
  ASSERT_TRUE(runUntil(t.loop, [&] { return !c->stream().writing(); }));
  EXPECT_EQ(t.received(), "GET / HTTP/1.1\r\nHost: app\r\n\r\n");
  c->stream().resume();
  t.send(response);
  ASSERT_TRUE(runUntil(t.loop, [&] { return x.messages == before + 1; }));
  c->detach();
  c->becomeIdle();
}

TEST_F(UpstreamConnectionTest, AnIdleConnectionGivesUpItsPartsAfterAWhileAndStaysOpen) {
  FakeExchange x;
  UpstreamConnection* c = open(60'000, /*keep_parts_ms=*/20);
  EXPECT_FALSE(c->hasParser());  // never used: nothing to keep
  serveOne(*this, c, x, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_TRUE(c->hasParser());  // kept for the next request
  EXPECT_FALSE(loop.takeHeapFreed());
  ASSERT_TRUE(runUntil(loop, [&] { return !c->hasParser(); }));
  EXPECT_TRUE(loop.takeHeapFreed()) << "the trim timer gives the pages back";
  EXPECT_EQ(c->state(), UpstreamConnection::State::Idle);
  EXPECT_EQ(owner.idle_closed, 0);
  // The next request gets new parts and is served as the first was.
  serveOne(*this, c, x, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(x.statuses, (std::vector<int>{200, 404}));
  EXPECT_EQ(x.body, "hello");
  c->close();
  expectGoneAndLoopClosed(0);
}

TEST_F(UpstreamConnectionTest, AnIdleConnectionClosesOnceItsIdleTimeoutHasPassed) {
  FakeExchange x;
  UpstreamConnection* c = open(/*idle_ms=*/60, /*keep_parts_ms=*/20);
  serveOne(*this, c, x, "HTTP/1.1 204 No Content\r\n\r\n");
  uint64_t idle_from = uv_now(loop.get());
  ASSERT_TRUE(runUntil(loop, [&] { return owner.idle_closed == 1; }));
  EXPECT_GE(uv_now(loop.get()) - idle_from, 60u);  // the whole idle timeout, not its first part
  expectGoneAndLoopClosed(1);
}

TEST_F(UpstreamConnectionTest, AnIdleConnectionThatReceivesBytesIsDropped) {
  open();
  step(loop);
  send("HTTP/1.1 200 OK\r\n\r\n");  // nobody asked: the app is confused
  expectGoneAndLoopClosed(1);
}

TEST_F(UpstreamConnectionTest, ThePeerClosingMidResponseReachesTheExchangeNotThePool) {
  FakeExchange x;
  UpstreamConnection* c = openFor(x);
  c->stream().resume();
  send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart");
  ASSERT_TRUE(runUntil(loop, [&] { return x.body == "part"; }));
  ::close(fds[1]);
  fds[1] = -1;
  ASSERT_TRUE(runUntil(loop, [&] { return x.eofs == 1; }));
  EXPECT_TRUE(c->peerClosed());
  EXPECT_EQ(x.messages, 0);
  EXPECT_EQ(owner.gone, 0);  // the exchange decides; here it gives the connection up
  c->detach();
  c->close();
  expectGoneAndLoopClosed(0);
}

TEST_F(UpstreamConnectionTest, ThePoolGivingUpTellsTheExchangeThenCloses) {
  FakeExchange x;
  UpstreamConnection* c = openFor(x);
  c->fail(UpstreamErrorKind::Timeout, "request_timeout");
  EXPECT_STREQ(x.why, "request_timeout");
  expectGoneAndLoopClosed(0);
}

}  // namespace
}  // namespace loopguard::upstream
