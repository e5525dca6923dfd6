// The Cluster on a private loop: outcomes of waiting requests reach them from the loop's ready
// queue, never from inside the call that decided them (a reload's shutdown() runs inside the
// admin handler; a release runs on another request's stack).
#include "proxy/upstream/cluster.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/unit/support/loop_runner.h"
#include "tests/unit/support/loopback_server.h"

namespace loopguard::upstream {
namespace {

using loopguard::testing::LoopbackServer;
using loopguard::testing::runUntil;
using loopguard::testing::step;

// What an Exchange is to a target, reduced to its outcome.
struct Waiter final : TargetWaiter {
  void onTargetReady(Lease* lease, bool) override {
    connection = &UpstreamConnection::of(*lease);
    ++outcomes;
  }
  void onTargetFailed(UpstreamErrorKind, const char* w) override {
    why = w;
    ++outcomes;
  }
  UpstreamConnection* connection = nullptr;
  const char* why = nullptr;
  int outcomes = 0;
};

struct ClusterTest : ::testing::Test {
  ClusterTest() : server(loop.get()) {}

  std::unique_ptr<Cluster> makeCluster(const std::string& host, uint16_t port) {
    config::Upstream u;
    u.name = "app";
    config::Address a;
    a.host = host;
    a.port = port;
    u.endpoints.push_back(a);
    return std::make_unique<Cluster>(loop.get(), buffers, u, counters);
  }
  uint16_t serverPort() const {
    return ntohs(reinterpret_cast<const sockaddr_in&>(server.address()).sin_port);
  }
  // Ends a test: every connection closed, the loop closes with nothing left open.
  void finish(std::unique_ptr<Cluster> cluster) {
    server.close();
    ASSERT_TRUE(runUntil(loop, [&] { return counters.open_connections == 0; }));
    cluster.reset();
    EXPECT_EQ(loop.close(), 0);
  }

  uv::Loop loop;
  net::BufferPool buffers{4};
  LoopbackServer server;
  UpstreamCounters counters;
};

TEST_F(ClusterTest, AReloadsShutdownFailsWaitingRequestsFromTheLoopNotFromInsideIt) {
  auto cluster = makeCluster("127.0.0.1", serverPort());
  Waiter w;
  ASSERT_EQ(cluster->acquire(w, {}).kind, AcquireResult::Kind::Pending);  // a connect starts
  cluster->shutdown();
  EXPECT_EQ(w.outcomes, 0);  // not on the admin handler's stack
  EXPECT_TRUE(w.waiting());
  step(loop);
  EXPECT_EQ(w.outcomes, 1);
  EXPECT_STREQ(w.why, "upstream shutting down");
  Waiter late;
  EXPECT_EQ(cluster->acquire(late, {}).kind, AcquireResult::Kind::Failed);
  finish(std::move(cluster));
}

TEST_F(ClusterTest, RequestsWaitingForTheFirstLookupAreFailedFromTheLoopOnShutdown) {
  auto cluster = makeCluster("localhost", serverPort());  // a name: resolved off the loop
  Waiter w;
  ASSERT_EQ(cluster->acquire(w, {}).kind, AcquireResult::Kind::Pending);
  cluster->shutdown();
  EXPECT_EQ(w.outcomes, 0);
  step(loop);
  EXPECT_EQ(w.outcomes, 1);
  EXPECT_STREQ(w.why, "upstream shutting down");
  finish(std::move(cluster));
}

TEST_F(ClusterTest, ACancelledWaiterHearsNothingOfTheShutdown) {
  auto cluster = makeCluster("127.0.0.1", serverPort());
  Waiter w;
  ASSERT_EQ(cluster->acquire(w, {}).kind, AcquireResult::Kind::Pending);
  cluster->shutdown();
  cluster->cancel(w);  // its client left before the failure arrived
  EXPECT_FALSE(w.waiting());
  ASSERT_TRUE(runUntil(loop, [&] { return counters.open_connections == 0; }));
  EXPECT_EQ(w.outcomes, 0);
  finish(std::move(cluster));
}

}  // namespace
}  // namespace loopguard::upstream
