// The relay on a private loop, with nothing outside the process: the client is one end of a
// socketpair handed to the proxy (ProxyServer::adoptConnection), and the route's target hands
// out upstream connections over socketpairs too, the test playing the app on the other end.
// What is checked is what the two peers see: bytes, their order, when they arrive, and that the
// proxy holds little of them when a peer does not read. Every test ends with uv_loop_close() ==
// 0: nothing of the relay outlives it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "common/logging.h"
#include "config/loader.h"
#include "proxy/proxy_server.h"
#include "proxy/upstream/upstream_connection.h"
#include "tests/unit/support/loop_runner.h"
#include "tests/unit/support/socket_pair.h"

namespace loopguard::proxy {
namespace {

using loopguard::testing::readAvailable;
using loopguard::testing::runUntil;

// A pair whose far end (the test's) does not block.
void openPair(int fds[2]) {
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
}

void sendAll(int fd, std::string_view bytes) {
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

// The route's target: each connection is a socketpair, the app's end kept for the test. A
// connection released as reusable is kept (one at a time) and handed out again.
class PairTarget final : public upstream::Target, private upstream::ConnectionOwner {
 public:
  PairTarget(uv_loop_t* loop, net::BufferPool& buffers) : loop_(loop), buffers_(buffers) {}
  ~PairTarget() override {
    for (int fd : app_fds) ::close(fd);
  }

  const std::string& name() const override { return name_; }
  upstream::AcquireResult acquire(upstream::TargetWaiter&,
                                  const upstream::AcquireOptions&) override {
    if (upstream::UpstreamConnection* c = std::exchange(idle_, nullptr)) {
      return upstream::AcquireResult::ready(c);
    }
    int fds[2];
    openPair(fds);
    upstream::ConnectionOwner& owner = *this;
    upstream::UpstreamConnection* c = &connections_.emplaceIn(
        uv::Loop::of(loop_).slab(sizeof(upstream::UpstreamConnection)), loop_, buffers_, owner,
        timeouts_, "pair");
    EXPECT_EQ(c->socket().open(fds[0]), 0);
    c->becomeIdle();
    app_fds.push_back(fds[1]);
    ++opened;
    return upstream::AcquireResult::ready(c);
  }
  void release(upstream::Lease* lease, bool reusable) override {
    upstream::UpstreamConnection* c = &upstream::UpstreamConnection::of(*lease);
    releases.push_back(reusable);
    if (reusable && idle_ == nullptr) {
      c->becomeIdle();
      idle_ = c;
    } else {
      c->close();
    }
  }
  config::Duration responseTimeout() const override { return std::chrono::seconds(30); }
  // The idle connection closes (before the loop may close).
  void closeIdle() {
    if (upstream::UpstreamConnection* c = std::exchange(idle_, nullptr)) c->close();
  }

  std::vector<int> app_fds;  // the app's end of each connection, in the order they were made
  std::vector<bool> releases;
  int opened = 0;
  int gone = 0;

 private:
  void onConnectResult(upstream::UpstreamConnection*, int) override {}
  void onIdleClosed(upstream::UpstreamConnection* c) override {
    if (idle_ == c) idle_ = nullptr;
  }
  void onConnectionGone(upstream::UpstreamConnection* c) override {
    if (idle_ == c) idle_ = nullptr;
    ++gone;
    connections_.retire(loop_, *c);  // as a pool does: the owner retires what closed
  }

  uv_loop_t* loop_;
  net::BufferPool& buffers_;
  std::string name_ = "pair";
  upstream::UpstreamConnection* idle_ = nullptr;
  upstream::UpstreamTimeouts timeouts_{loop_, 5'000, 60'000};  // before connections_
  upstream::ConnectionSet connections_;
};

struct RelayTest : ::testing::Test {
  void SetUp() override {
    setupLogging("warn", LogFormatKind::Text);
    config::LoadResult r = config::loadConfigString(
        "listen: \"127.0.0.1:0\"\nadvice: {enabled: false}\n"
        "pools: {app: {command: [app, \"{socket}\"]}}\n"
        "routes: [{name: relay, match: {prefix: /}, pool: app, buffer_request: false}]\n",
        "relay.yaml", config::Purpose::Proxy);
    ASSERT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors[0].format());
    server = std::make_unique<ProxyServer>(loop.get(), r.config, [this](const std::string&) {
      upstream::PoolBinding b;
      b.target = target;
      return b;
    });
    target = std::make_shared<PairTarget>(loop.get(), server->context().buffers);
    server->configureAccessLog(false, AccessLogFormat::Text);
    server->applyConfig(r.config);  // the snapshot now holds the target
  }
  void TearDown() override {
    if (client >= 0) ::close(client);
    if (server) {
      server->closeAll();
      target->closeIdle();
      EXPECT_TRUE(runUntil(loop, [&] { return server->connections() == 0; }));
      EXPECT_TRUE(runUntil(loop, [&] { return target->gone == target->opened; }));
      server.reset();
      target.reset();
    }
    uv_run(loop.get(), UV_RUN_DEFAULT);  // the close callbacks of what the server owned
    EXPECT_EQ(loop.close(), 0);
  }

  // A client connection to the proxy; returns the client's end.
  void connectClient() {
    int fds[2];
    openPair(fds);
    ASSERT_EQ(server->adoptConnection(fds[0]), 0);
    client = fds[1];
  }
  int app(size_t i = 0) const { return target->app_fds.at(i); }
  // Runs the loop until `fd` has received something that contains `needle`; returns it all.
  std::string awaitBytes(int fd, std::string& seen, std::string_view needle) {
    EXPECT_TRUE(runUntil(loop, [&] {
      seen += readAvailable(fd);
      return seen.find(needle) != std::string::npos;
    })) << "never received '" << needle << "', only: " << seen;
    return seen;
  }

  uv::Loop loop;
  std::shared_ptr<PairTarget> target;
  std::unique_ptr<ProxyServer> server;
  int client = -1;
};

TEST_F(RelayTest, ABodyIsStreamedAsItArrivesAndTheConnectionsServeTheNextRequest) {
  connectClient();
  sendAll(client, "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello");
  std::string up;
  ASSERT_TRUE(runUntil(loop, [&] { return target->opened == 1; }));
  // Half the body reaches the app before the rest is sent: it is relayed, not buffered.
  awaitBytes(app(), up, "\r\n\r\nhello");
  EXPECT_EQ(up.rfind("POST /up HTTP/1.1\r\n", 0), 0u) << up;
  EXPECT_NE(up.find("Content-Length: 10\r\n"), std::string::npos) << up;
  sendAll(client, "world");
  awaitBytes(app(), up, "helloworld");

  sendAll(app(), "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
  std::string down;
  awaitBytes(client, down, "\r\n\r\nok");
  EXPECT_EQ(down.rfind("HTTP/1.1 201 Created\r\n", 0), 0u) << down;
  ASSERT_TRUE(runUntil(loop, [&] { return target->releases.size() == 1; }));
  EXPECT_TRUE(target->releases[0]) << "a complete keep-alive exchange leaves a reusable connection";

  // The same client connection, the same upstream connection.
  sendAll(client, "GET /again HTTP/1.1\r\nHost: t\r\n\r\n");
  up.clear();
  awaitBytes(app(), up, "\r\n\r\n");
  EXPECT_EQ(up.rfind("GET /again HTTP/1.1\r\n", 0), 0u) << up;
  sendAll(app(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  down.clear();
  awaitBytes(client, down, "HTTP/1.1 200 OK\r\n");
  EXPECT_EQ(target->opened, 1);
}

TEST_F(RelayTest, PipelinedRequestsGoUpOneAtATimeAndComeBackInOrder) {
  connectClient();
  sendAll(client,
          "GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
          "GET /second HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string up;
  ASSERT_TRUE(runUntil(loop, [&] { return target->opened == 1; }));
  awaitBytes(app(), up, "\r\n\r\n");
  EXPECT_EQ(up.find("/second"), std::string::npos) << "the second went up before the first was answered";
  sendAll(app(), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
  awaitBytes(app(), up, "GET /second");
  sendAll(app(), "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond");
  std::string down;
  awaitBytes(client, down, "second");
  size_t first = down.find("first");
  ASSERT_NE(first, std::string::npos) << down;
  EXPECT_LT(first, down.find("second"));
}

// A client that does not read: the app's bytes stop at the proxy's read pacing (one write in
// flight, the app's reads stopped meanwhile), so what the proxy holds stays a few blocks
// whatever the size of the response; then everything arrives once the client reads.
TEST_F(RelayTest, AClientThatDoesNotReadStopsTheAppsBytesAtAFewBlocks) {
  connectClient();
  sendAll(client, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string up;
  ASSERT_TRUE(runUntil(loop, [&] { return target->opened == 1; }));
  awaitBytes(app(), up, "\r\n\r\n");
  constexpr size_t kBody = 16 << 20;
  std::string head = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kBody) + "\r\n\r\n";
  sendAll(app(), head);
  // Every byte says where it is, so that a byte relayed twice, lost or out of place shows.
  std::string body(kBody, '\0');
  for (size_t i = 0; i < kBody; ++i) body[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  size_t sent = 0;
  // Offer the body until the app's socket takes no more: the proxy stopped reading.
  auto offer = [&] {
    while (sent < kBody) {
      ssize_t n = ::write(app(), body.data() + sent, std::min<size_t>(64 * 1024, kBody - sent));
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  };
  for (int quiet_rounds = 0; quiet_rounds < 20;) {
    size_t before = sent;
    offer();
    testing::step(loop);
    quiet_rounds = sent == before ? quiet_rounds + 1 : 0;
  }
  EXPECT_LT(sent, kBody) << "the proxy read a whole response its client never read";
  const net::BufferPool& blocks = server->context().buffers;
  EXPECT_LE(blocks.blocksInUse(net::BufferPool::Size::Large), 2u);
  EXPECT_LE(blocks.blocksInUse(net::BufferPool::Size::Small), 4u);

  std::string down;
  size_t body_at = std::string::npos;
  ASSERT_TRUE(runUntil(
      loop,
      [&] {
        offer();
        down += readAvailable(client);
        if (body_at == std::string::npos && down.find("\r\n\r\n") != std::string::npos) {
          body_at = down.find("\r\n\r\n") + 4;
        }
        return body_at != std::string::npos && down.size() - body_at >= kBody;
      },
      30'000))
      << "received " << down.size() << " bytes, the app sent " << sent;
  EXPECT_EQ(down.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  ASSERT_EQ(down.size() - body_at, kBody);
  EXPECT_TRUE(down.compare(body_at, kBody, body) == 0) << "the body arrived altered";
}

TEST_F(RelayTest, AClientGoneMidResponseLeavesNoReusableConnection) {
  connectClient();
  sendAll(client, "GET /cut HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string up;
  ASSERT_TRUE(runUntil(loop, [&] { return target->opened == 1; }));
  awaitBytes(app(), up, "\r\n\r\n");
  sendAll(app(), "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
  std::string down;
  awaitBytes(client, down, "partial");
  ::close(client);
  client = -1;
  ASSERT_TRUE(runUntil(loop, [&] { return target->releases.size() == 1; }));
  EXPECT_FALSE(target->releases[0]) << "half a response is on that connection";
  ASSERT_TRUE(runUntil(loop, [&] { return server->connections() == 0; }));
}

}  // namespace
}  // namespace loopguard::proxy
