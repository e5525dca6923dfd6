#include "proxy/upstream/connection_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "tests/unit/support/loop_runner.h"
#include "tests/unit/support/loopback_server.h"

namespace loopguard::upstream {
namespace {

using loopguard::testing::LoopbackServer;
using loopguard::testing::runUntil;
using loopguard::testing::step;

// The pool's owner: fails a request whose connect failed, and counts what it is told.
struct FakeOwner final : ConnectionPool::Owner {
  explicit FakeOwner(uv_loop_t* l) : loop(l) {}
  void onConnectFailed(ConnectionPool&, TargetWaiter* charged, int status) override {
    ++connect_failures;
    last_status = status;
    if (charged != nullptr) charged->deliverFailure(loop, UpstreamErrorKind::Connect, "refused");
  }
  void onHandOut(ConnectionPool&, TargetWaiter&, UpstreamConnection&) override { ++handed_out; }
  void onWaitCancelled(ConnectionPool&, TargetWaiter&) override { ++cancelled; }
  void onConnectionClosed(ConnectionPool& pool, UpstreamConnection& c, bool) override {
    ++closed;
    open_when_closed.push_back(pool.open());
    closed_peers.push_back(c.peerName());  // still alive: deleted at the end of the loop turn
  }
  uv_loop_t* loop;
  std::vector<uint32_t> open_when_closed;
  std::vector<std::string> closed_peers;
  int connect_failures = 0;
  int last_status = 0;
  int handed_out = 0;
  int cancelled = 0;
  int closed = 0;
};

// A request: what an Exchange is to the pool.
struct Request final : TargetWaiter, private UpstreamStreamHandler {
  void onTargetReady(Lease* lease, bool r) override {
    UpstreamConnection* c = &UpstreamConnection::of(*lease);
    connection = c;
    reused = r;
    ++outcomes;
    c->attach(*this, 64 * 1024);  // in use, as an exchange would
  }
  void onTargetFailed(UpstreamErrorKind, const char* w) override {
    why = w;
    ++outcomes;
  }
  bool ready() const { return connection != nullptr; }

  UpstreamConnection* connection = nullptr;
  bool reused = false;
  const char* why = nullptr;
  int outcomes = 0;

 private:
  http::ParserAction onStreamHead(proxy::HttpStream&) override { return http::ParserAction::Continue; }
  http::ParserAction onStreamBody(proxy::HttpStream&, const char*, size_t) override {
    return http::ParserAction::Continue;
  }
  http::ParserAction onStreamMessageEnd(proxy::HttpStream&) override {
    return http::ParserAction::Continue;
  }
  void onStreamParsed(proxy::HttpStream&, const http::ParseResult&) override {}
  void onStreamWritten(proxy::HttpStream&, int) override {}
  void onStreamEof(proxy::HttpStream&, int) override {}
  void onUpstreamFailed(UpstreamErrorKind, const char*) override {}
};

struct PoolTest : ::testing::Test {
  PoolTest() : server(loop.get()), owner(loop.get()) {}

  std::unique_ptr<ConnectionPool> makePool(PoolSettings s, const sockaddr_storage& to) {
    Destination d;
    d.name = "test";
    d.addr = to;
    s.open_gauge = &open_gauge;
    if (s.idle_timeout_ms == 0) s.idle_timeout_ms = 10'000;
    if (s.connect_timeout_ms == 0) s.connect_timeout_ms = 2'000;
    return std::make_unique<ConnectionPool>(loop.get(), buffers, owner, d, s);
  }
  std::unique_ptr<ConnectionPool> makePool(PoolSettings s = {}) {
    if (s.max_idle == 0) s.max_idle = 8;
    return makePool(s, server.address());
  }
  // Ends a test: every connection closed, the loop closes with nothing left open.
  void finish(std::unique_ptr<ConnectionPool> pool) {
    pool->shutdown("test over");
    pool->closeIdle();
    server.close();
    ASSERT_TRUE(runUntil(loop, [&] { return pool->open() == 0; }));
    pool.reset();
    EXPECT_EQ(open_gauge, 0u);
    EXPECT_EQ(loop.close(), 0);  // uv_loop_close(): no handle left
  }

  uv::Loop loop;
  net::BufferPool buffers{4};
  LoopbackServer server;
  FakeOwner owner;
  uint64_t open_gauge = 0;
};

TEST_F(PoolTest, AConnectIsDeliveredFromTheLoopNeverFromRequest) {
  auto pool = makePool();
  Request r;
  pool->request(r);
  EXPECT_EQ(r.outcomes, 0);
  EXPECT_EQ(pool->connecting(), 1u);
  ASSERT_TRUE(runUntil(loop, [&] { return r.ready(); }));
  EXPECT_FALSE(r.reused);
  EXPECT_EQ(owner.handed_out, 1);
  EXPECT_EQ(open_gauge, 1u);
  pool->release(r.connection, false);
  finish(std::move(pool));
}

TEST_F(PoolTest, IdleConnectionsAreReusedMostRecentFirst) {
  auto pool = makePool();
  Request a, b;
  pool->request(a);
  pool->request(b);
  ASSERT_TRUE(runUntil(loop, [&] { return a.ready() && b.ready(); }));
  EXPECT_EQ(server.accepted(), 2u);
  pool->release(a.connection, true);
  pool->release(b.connection, true);  // the most recent
  EXPECT_EQ(pool->idle(), 2u);
  UpstreamConnection* first = pool->takeIdle();
  EXPECT_EQ(first, b.connection);
  UpstreamConnection* second = pool->takeIdle();
  EXPECT_EQ(second, a.connection);
  EXPECT_EQ(pool->takeIdle(), nullptr);
  pool->release(first, false);
  pool->release(second, false);
  finish(std::move(pool));
}

// The hand-over rule: a connection that frees up while requests wait goes to the oldest of them
// (even though a connect is on its way for it), from the ready queue: never on the stack of the
// request that released it. The connect then serves the next request, or goes idle.
TEST_F(PoolTest, AReleasedConnectionReachesTheNextWaiterInALaterStep) {
  auto pool = makePool();
  Request first;
  pool->request(first);
  ASSERT_TRUE(runUntil(loop, [&] { return first.ready(); }));
  Request second;
  pool->request(second);  // a connect starts for it
  UpstreamConnection* c = first.connection;
  pool->release(c, true);
  EXPECT_EQ(second.outcomes, 0);  // not inside release()
  step(loop);
  ASSERT_TRUE(second.ready());
  EXPECT_EQ(second.connection, c);
  EXPECT_TRUE(second.reused);
  ASSERT_TRUE(runUntil(loop, [&] { return pool->idle() == 1; }));  // the connect, unused
  pool->release(c, false);
  finish(std::move(pool));
}

// The cap bounds the handshakes in progress: a burst wider than it is served in full, oldest
// first, with never more than max_connecting connects on the way.
TEST_F(PoolTest, ConnectsStayUnderTheCapAndWaitersAreServedOldestFirst) {
  PoolSettings s;
  s.max_connecting = 2;
  auto pool = makePool(s);
  std::vector<std::unique_ptr<Request>> requests;
  for (int i = 0; i < 6; ++i) {
    requests.push_back(std::make_unique<Request>());
    pool->request(*requests.back());
  }
  EXPECT_EQ(pool->connecting(), 2u);
  EXPECT_EQ(pool->waiting(), 6u);
  EXPECT_EQ(pool->load(), 6u);
  std::vector<size_t> order;
  uint32_t most_connecting = 0;
  ASSERT_TRUE(runUntil(loop, [&] {
    most_connecting = std::max(most_connecting, pool->connecting());
    for (size_t i = 0; i < requests.size(); ++i) {
      if (requests[i]->ready() && std::find(order.begin(), order.end(), i) == order.end()) {
        order.push_back(i);
      }
    }
    return order.size() == requests.size();
  }));
  EXPECT_LE(most_connecting, 2u);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  EXPECT_EQ(server.accepted(), 6u);
  for (auto& r : requests) pool->release(r->connection, false);
  finish(std::move(pool));
}

TEST_F(PoolTest, ACancelledWaiterLeavesAtOnceAndItsConnectGoesIdle) {
  auto pool = makePool();
  auto r = std::make_unique<Request>();
  pool->request(*r);
  r->cancelWait();
  EXPECT_EQ(pool->waiting(), 0u);
  EXPECT_EQ(owner.cancelled, 1);
  ASSERT_TRUE(runUntil(loop, [&] { return pool->idle() == 1; }));
  EXPECT_EQ(r->outcomes, 0);
  // A waiter destroyed while it waits leaves the queue the same way.
  {
    PoolSettings s;
    s.max_connecting = 1;
    auto capped = makePool(s, server.address());
    Request holder;
    capped->request(holder);
    {
      Request gone;
      capped->request(gone);
      EXPECT_EQ(capped->waiting(), 2u);
    }
    EXPECT_EQ(capped->waiting(), 1u);
    ASSERT_TRUE(runUntil(loop, [&] { return holder.ready(); }));
    capped->release(holder.connection, false);
    capped->shutdown("test over");
    ASSERT_TRUE(runUntil(loop, [&] { return capped->open() == 0; }));
  }
  finish(std::move(pool));
}

TEST_F(PoolTest, ACancelledHandOverGoesToTheNextWaiter) {
  auto pool = makePool();
  Request a;
  pool->request(a);
  ASSERT_TRUE(runUntil(loop, [&] { return a.ready(); }));
  pool->release(a.connection, true);
  UpstreamConnection* c = pool->takeIdle();
  ASSERT_NE(c, nullptr);
  Request b, d;
  pool->request(b);  // no idle: connects
  pool->request(d);
  pool->release(c, true);  // set aside for b
  b.cancelWait();          // before the hand-over ran
  step(loop);
  EXPECT_EQ(b.outcomes, 0);
  ASSERT_TRUE(d.ready());
  EXPECT_EQ(d.connection, c);
  // The connects started for b and d complete for nobody and go idle.
  ASSERT_TRUE(runUntil(loop, [&] { return pool->idle() == 2; }));
  pool->release(d.connection, false);
  finish(std::move(pool));
}

TEST_F(PoolTest, AFreshRequestGetsAConnectionOfItsOwn) {
  auto pool = makePool();
  Request a;
  pool->request(a);
  ASSERT_TRUE(runUntil(loop, [&] { return a.ready(); }));
  pool->release(a.connection, true);
  ASSERT_EQ(pool->idle(), 1u);
  Request retry;
  retry.options.fresh = true;
  pool->request(retry);
  ASSERT_TRUE(runUntil(loop, [&] { return retry.ready(); }));
  EXPECT_FALSE(retry.reused);
  EXPECT_EQ(server.accepted(), 2u);
  EXPECT_EQ(pool->idle(), 1u);  // the pooled one was left alone
  pool->release(retry.connection, false);
  finish(std::move(pool));
}

TEST_F(PoolTest, AFailedConnectIsChargedToAWaiterAndReportedFromTheLoop) {
  PoolSettings s;
  s.max_idle = 4;
  auto pool = makePool(s, loopguard::testing::refusingAddress());
  Request r;
  pool->request(r);
  EXPECT_EQ(owner.connect_failures, 0);
  ASSERT_TRUE(runUntil(loop, [&] { return r.outcomes == 1; }));
  EXPECT_EQ(owner.connect_failures, 1);
  EXPECT_EQ(owner.last_status, UV_ECONNREFUSED);
  EXPECT_STREQ(r.why, "refused");
  EXPECT_EQ(pool->waiting(), 0u);
  finish(std::move(pool));
}

TEST_F(PoolTest, ShutdownFailsWaitersFromTheLoopNotFromTheCall) {
  PoolSettings s;
  s.max_connecting = 1;
  auto pool = makePool(s);
  Request a, b;
  pool->request(a);
  pool->request(b);
  pool->shutdown("upstream shutting down");
  EXPECT_EQ(a.outcomes + b.outcomes, 0);
  step(loop);
  EXPECT_STREQ(a.why, "upstream shutting down");
  EXPECT_STREQ(b.why, "upstream shutting down");
  // The connect that was on its way closes when it completes.
  ASSERT_TRUE(runUntil(loop, [&] { return pool->open() == 0; }));
  Request late;
  pool->request(late);
  step(loop);
  EXPECT_STREQ(late.why, "upstream shutting down");
  finish(std::move(pool));
}

TEST_F(PoolTest, TheIdleSetIsBoundedAndDropsWhatTheAppCloses) {
  PoolSettings s;
  s.max_idle = 1;
  auto pool = makePool(s);
  Request a, b;
  pool->request(a);
  pool->request(b);
  ASSERT_TRUE(runUntil(loop, [&] { return a.ready() && b.ready(); }));
  pool->release(a.connection, true);
  pool->release(b.connection, true);  // over max_idle: closed
  EXPECT_EQ(pool->idle(), 1u);
  ASSERT_TRUE(runUntil(loop, [&] { return pool->open() == 1; }));
  server.closePeers();  // the app closes its side of the idle connection
  ASSERT_TRUE(runUntil(loop, [&] { return pool->open() == 0; }));
  EXPECT_EQ(pool->idle(), 0u);
  EXPECT_EQ(owner.closed, 2);
  finish(std::move(pool));
}

TEST_F(PoolTest, AClosedConnectionLeavesThePoolInItsCloseCallbackAndDiesAfterTheTurn) {
  auto pool = makePool();
  Request a, b;
  pool->request(a);
  pool->request(b);
  ASSERT_TRUE(runUntil(loop, [&] { return a.ready() && b.ready(); }));
  EXPECT_EQ(pool->open(), 2u);
  pool->release(a.connection, false);
  EXPECT_EQ(pool->open(), 2u) << "closing, not closed: the pool holds it until its callback";
  ASSERT_TRUE(runUntil(loop, [&] { return owner.closed == 1; }));
  // The owner heard it with the connection already out of the set, yet still readable (ASan
  // would catch a delete before the end of the turn; LeakSanitizer a retire that never frees).
  EXPECT_EQ(owner.open_when_closed, (std::vector<uint32_t>{1}));
  EXPECT_EQ(owner.closed_peers, (std::vector<std::string>{"test"}));
  EXPECT_EQ(pool->open(), 1u);
  pool->release(b.connection, false);
  finish(std::move(pool));
  EXPECT_EQ(owner.open_when_closed, (std::vector<uint32_t>{1, 0}));
}

TEST_F(PoolTest, ARetiredPoolOutlivesItsOwnerUntilItsConnectionsAreClosed) {
  auto pool = makePool();
  Request a;
  pool->request(a);
  ASSERT_TRUE(runUntil(loop, [&] { return a.ready(); }));
  pool->release(a.connection, true);
  Request b;
  pool->request(b);  // takes the idle one, set aside
  ConnectionPool::retire(std::move(pool));
  step(loop);  // b still gets its connection: it was on its way
  ASSERT_TRUE(b.ready());
  ConnectionPool::of(*b.connection).release(b.connection, true);  // closes: the pool is retired
  server.close();
  EXPECT_EQ(loop.close(), 0);  // the pool deleted itself once its last connection closed
  EXPECT_EQ(open_gauge, 0u);
}

}  // namespace
}  // namespace loopguard::upstream
