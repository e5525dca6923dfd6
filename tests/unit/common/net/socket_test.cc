#include "common/net/socket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/uv/handle.h"
#include "common/uv/loop.h"
#include "tests/unit/support/loop_runner.h"
#include "tests/unit/support/loopback_server.h"
#include "tests/unit/support/socket_pair.h"

namespace loopguard::net {
namespace {

using loopguard::testing::readAvailable;
using loopguard::testing::runUntil;

// What a Socket told its owner, in order.
struct Recorder : SocketEvents {
  std::vector<std::string> events;
  std::string input;
  Socket* socket = nullptr;  // consumes what it reads, when set
  void onSocketRead() override {
    events.push_back("read");
    if (socket == nullptr) return;
    input.append(socket->input());
    socket->consume(socket->input().size());
  }
  void onSocketEof(int status) override { events.push_back("eof " + std::to_string(status)); }
  void onSocketWritten(int status) override {
    events.push_back("written " + std::to_string(status));
  }
  void onSocketConnected(int status) override {
    events.push_back("connected " + std::to_string(status));
  }
  void onSocketClosed() override {
    ++closed;
    events.push_back("closed");
  }
  int closed = 0;
  bool saw(const std::string& event) const {
    for (const std::string& e : events) {
      if (e == event) return true;
    }
    return false;
  }
};

// A socketpair: one end for a Socket (open()), the other for the test, non-blocking, with
// small buffers so that a test can fill them.
struct Pair {
  int ours = -1;
  int peer = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    ours = fds[0];
    peer = fds[1];
    int small = 4096;
    ::setsockopt(ours, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    ::setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  }
  ~Pair() {
    if (peer >= 0) ::close(peer);
  }
};

// Queues a write larger than the peer's buffers will take while it does not read.
Socket::WriteStatus writeMoreThanFits(Socket& socket, std::string& bytes) {
  bytes.assign(BufferPool::kSmallBlock * 8, 'x');
  uv_buf_t buf = uv_buf_init(bytes.data(), static_cast<unsigned>(bytes.size()));
  return socket.writeNow(&buf, 1);
}

// Writes to the socket until the kernel takes no more.
void fillKernel(Socket& socket) {
  std::string filler(BufferPool::kLargeBlock, 'f');
  uv_buf_t fill = uv_buf_init(filler.data(), static_cast<unsigned>(filler.size()));
  while (uv_try_write(socket.stream(), &fill, 1) > 0) {
  }
}

// A Socket on one end of a socketpair (a unix-domain socket: a pipe handle), and the test as
// its peer.
class SocketOnPair : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(socket.open(pair.ours), 0); }
  // What the peer reads until the write in flight completed.
  std::string readUntilWritten() {
    std::string got;
    EXPECT_TRUE(runUntil(loop, [&] {
      got += readAvailable(pair.peer);
      return events.saw("written 0");
    }));
    return got + readAvailable(pair.peer);
  }
  uv::Loop loop;
  BufferPool pool;
  Recorder events;
  Pair pair;
  Socket socket{loop.get(), pool, events};
};

TEST(Socket, AnIdleSocketIsSmallAndHoldsNoRequestOrBuffer) {
  // Every idle keep-alive connection carries one: the requests, the write's rest and the close
  // bookkeeping of a pending write live only while in flight.
  EXPECT_LE(sizeof(Socket), 56u);
  uv::Loop loop;
  BufferPool pool;
  Recorder events;
  Pair pair;
  Socket socket(loop.get(), pool, events);
  EXPECT_EQ(socket.stream(), nullptr);  // no handle before it opens
  EXPECT_EQ(socket.loop(), loop.get());
  ASSERT_EQ(socket.open(pair.ours), 0);
  EXPECT_EQ(socket.stream()->type, UV_NAMED_PIPE);
  EXPECT_EQ(socket.loop(), loop.get());
  EXPECT_EQ(socket.open(pair.ours), UV_EALREADY);  // one handle per Socket
  EXPECT_FALSE(socket.writing());
  EXPECT_EQ(pool.blocksInUse(BufferPool::Size::Small), 0u);
  socket.close();
  EXPECT_TRUE(socket.closed());
  EXPECT_EQ(socket.stream(), nullptr);
  EXPECT_EQ(socket.loop(), loop.get());  // still, while the handle closes
  EXPECT_EQ(loop.close(), 0);
  EXPECT_EQ(socket.loop(), loop.get());  // and once it is gone
}

TEST_F(SocketOnPair, AUnixSocketReadsAndWritesThroughItsPipeHandle) {
  events.socket = &socket;
  socket.readStart();
  ASSERT_EQ(::write(pair.peer, "ping", 4), 4);
  ASSERT_TRUE(runUntil(loop, [&] { return events.input == "ping"; }));
  EXPECT_EQ(pool.blocksInUse(BufferPool::Size::Small), 0u);  // consumed: given back
  std::string pong = "pong";
  uv_buf_t buf = uv_buf_init(pong.data(), 4);
  EXPECT_EQ(socket.writeNow(&buf, 1), Socket::WriteStatus::Done);
  EXPECT_EQ(readAvailable(pair.peer), "pong");
  EXPECT_EQ(socket.peerIp(), "");  // not TCP
  ::close(pair.peer);
  pair.peer = -1;
  ASSERT_TRUE(runUntil(loop, [&] { return events.saw("eof " + std::to_string(UV_EOF)); }));
  socket.close();
  EXPECT_EQ(loop.close(), 0);
}

TEST(Socket, TcpSocketsConnectAcceptAndTalkThroughTcpHandles) {
  uv::Loop loop;
  BufferPool pool;
  uv::Handle<uv_tcp_t> listener;
  ASSERT_EQ(uv_tcp_init(loop.get(), listener.get()), 0);
  listener.markInitialized();
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", 0, &addr);
  ASSERT_EQ(uv_tcp_bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), 0), 0);
  int len = sizeof(addr);
  uv_tcp_getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  Recorder server_events;
  Socket server_side(loop.get(), pool, server_events);
  server_events.socket = &server_side;
  listener.get()->data = &server_side;
  ASSERT_EQ(uv_listen(listener.stream(), 8,
                      [](uv_stream_t* s, int status) {
                        ASSERT_EQ(status, 0);
                        auto* socket = static_cast<Socket*>(s->data);
                        ASSERT_EQ(socket->accept(s), 0);
                        socket->readStart();
                      }),
            0);

  Recorder client_events;
  Socket client(loop.get(), pool, client_events);
  ASSERT_EQ(client.connectTcp(reinterpret_cast<const sockaddr*>(&addr)), 0);
  EXPECT_TRUE(client_events.events.empty());  // never synchronously
  ASSERT_TRUE(runUntil(loop, [&] { return client_events.saw("connected 0"); }));
  EXPECT_EQ(client.stream()->type, UV_TCP);
  client.readStart();
  std::string hello = "hello over tcp";
  uv_buf_t buf = uv_buf_init(hello.data(), static_cast<unsigned>(hello.size()));
  ASSERT_EQ(client.write(&buf, 1), 0);
  EXPECT_TRUE(client.writing());
  ASSERT_TRUE(runUntil(loop, [&] {
    return client_events.saw("written 0") && server_events.input == hello;
  }));
  EXPECT_FALSE(client.writing());
  EXPECT_EQ(server_side.stream()->type, UV_TCP);  // the listener's type
  EXPECT_EQ(server_side.peerIp(), "127.0.0.1");
  server_side.resetOnClose();  // TCP only: no-op on pipes
  server_side.close();
  ASSERT_TRUE(runUntil(loop, [&] { return client_events.saw("eof " + std::to_string(UV_ECONNRESET)); }));
  client.close();
  listener.close();
  EXPECT_EQ(loop.close(), 0);
}

TEST_F(SocketOnPair, AWritePendingAtCloseCompletesCancelledBeforeTheCloseCallback) {
  std::string bytes;
  ASSERT_EQ(writeMoreThanFits(socket, bytes), Socket::WriteStatus::Pending);
  EXPECT_TRUE(socket.writing());
  socket.close();
  EXPECT_EQ(events.closed, 0);  // from the close callback
  ASSERT_TRUE(runUntil(loop, [&] { return events.closed == 1; }));
  ASSERT_EQ(events.events.size(), 2u);
  EXPECT_EQ(events.events[0], "written " + std::to_string(UV_ECANCELED));
  EXPECT_EQ(events.events[1], "closed");
  EXPECT_FALSE(socket.writing());
  socket.close();  // only the first call counts
  EXPECT_EQ(events.closed, 1);
  EXPECT_EQ(loop.close(), 0);
}

TEST_F(SocketOnPair, ACopiedWriteGivesItsSpillBackWhenItCompletes) {
  // Fill the kernel, then a small write is copied: its spill is the one block in use.
  fillKernel(socket);
  std::string head = "HTTP/1.1 200 OK\r\n";
  std::string body = "a small body";
  uv_buf_t bufs[] = {uv_buf_init(head.data(), static_cast<unsigned>(head.size())),
                     uv_buf_init(body.data(), static_cast<unsigned>(body.size()))};
  ASSERT_EQ(socket.writeNow(bufs, 2), Socket::WriteStatus::Copied);
  EXPECT_EQ(pool.blocksInUse(BufferPool::Size::Small), 1u);
  head.assign(head.size(), '#');  // the caller's buffers are free at once
  body.assign(body.size(), '#');
  std::string got = readUntilWritten();
  ASSERT_GE(got.size(), 29u);
  EXPECT_EQ(got.substr(got.size() - 29), "HTTP/1.1 200 OK\r\na small body");
  EXPECT_EQ(pool.blocksInUse(BufferPool::Size::Small), 0u);
  socket.close();
  EXPECT_EQ(loop.close(), 0);
}

TEST_F(SocketOnPair, APartlyTakenLargeWriteSendsTheRestInOrder) {
  // Many buffers (more than the socket copies inline), distinct bytes: the peer must see all.
  std::vector<std::string> parts;
  std::string expected;
  for (int i = 0; i < 40; ++i) {
    parts.emplace_back(BufferPool::kSmallBlock / 4, static_cast<char>('A' + i % 26));
    expected += parts.back();
  }
  std::vector<uv_buf_t> bufs;
  for (std::string& p : parts) bufs.push_back(uv_buf_init(p.data(), static_cast<unsigned>(p.size())));
  ASSERT_EQ(socket.writeNow(bufs.data(), static_cast<unsigned>(bufs.size())),
            Socket::WriteStatus::Pending);
  std::string got = readUntilWritten();
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected);
  socket.close();
  EXPECT_EQ(loop.close(), 0);
}

TEST(Socket, DestroyedWithAWritePendingItTellsNoOneAndFreesEverything) {
  uv::Loop loop;
  BufferPool pool;
  Recorder events;
  Pair pair;
  std::string bytes;
  {
    auto socket = std::make_unique<Socket>(loop.get(), pool, events);
    ASSERT_EQ(socket->open(pair.ours), 0);
    fillKernel(*socket);
    std::string hundred(100, 'h');
    uv_buf_t small = uv_buf_init(hundred.data(), 100);
    ASSERT_EQ(socket->writeNow(&small, 1), Socket::WriteStatus::Copied);
    // Its owner closes it, then goes before the close callback (torn down with the loop).
    socket->close();
  }
  EXPECT_EQ(pool.blocksInUse(BufferPool::Size::Small), 0u);  // the spill came back at once
  Pair other;
  {
    Socket second(loop.get(), pool, events);
    ASSERT_EQ(second.open(other.ours), 0);
    ASSERT_EQ(writeMoreThanFits(second, bytes), Socket::WriteStatus::Pending);
  }  // destroyed open, with a write pending: closed by its destructor
  EXPECT_EQ(loop.close(), 0);  // ASan: the handles and requests are freed
  EXPECT_TRUE(events.events.empty());
  EXPECT_EQ(events.closed, 0);
}

TEST(Socket, DestroyedWithAConnectPendingItIsNotCalledBack) {
  uv::Loop loop;
  BufferPool pool;
  Recorder events;
  testing::LoopbackServer server(loop.get());
  {
    Socket socket(loop.get(), pool, events);
    ASSERT_EQ(socket.connectTcp(reinterpret_cast<const sockaddr*>(&server.address())), 0);
    Socket unix_socket(loop.get(), pool, events);
    ASSERT_EQ(unix_socket.connectUnix("/nonexistent/loopguard-socket-test"), 0);
  }
  server.close();
  EXPECT_EQ(loop.close(), 0);
  EXPECT_TRUE(events.events.empty());
}

TEST(Socket, ARefusedConnectIsReportedAndAShutdownCompletes) {
  uv::Loop loop;
  BufferPool pool;
  Recorder events;
  Socket refused(loop.get(), pool, events);
  sockaddr_storage nowhere = testing::refusingAddress();
  ASSERT_EQ(refused.connectTcp(reinterpret_cast<const sockaddr*>(&nowhere)), 0);
  ASSERT_TRUE(runUntil(loop, [&] {
    return events.saw("connected " + std::to_string(UV_ECONNREFUSED));
  }));
  refused.close();

  Pair pair;
  Recorder pair_events;
  Socket socket(loop.get(), pool, pair_events);
  ASSERT_EQ(socket.open(pair.ours), 0);
  ASSERT_EQ(socket.shutdown(), 0);
  char c;
  ASSERT_TRUE(runUntil(loop, [&] { return ::read(pair.peer, &c, 1) == 0; }));  // the peer's EOF
  socket.close();
  EXPECT_EQ(socket.shutdown(), UV_EPIPE);
  EXPECT_EQ(loop.close(), 0);
}

TEST(Socket, DestroyedWithoutACloseItTellsItsOwnerNothing) {
  // Its owner is the one destroying it (or going with it): nothing may call back into it.
  uv::Loop loop;
  BufferPool pool;
  Recorder events;
  { Socket never_opened(loop.get(), pool, events); }
  {
    Pair pair;
    Socket opened(loop.get(), pool, events);
    ASSERT_EQ(opened.open(pair.ours), 0);
  }
  EXPECT_EQ(loop.close(), 0);  // the open one's handle closed too
  EXPECT_EQ(events.closed, 0);
}

TEST(Socket, ClosedBeforeItHasAHandleItCallsBackAtOnce) {
  uv::Loop loop;
  BufferPool pool;
  Recorder events;
  Socket socket(loop.get(), pool, events);
  socket.close();
  EXPECT_EQ(events.closed, 1);
  EXPECT_TRUE(socket.closed());
  std::string bytes = "x";
  uv_buf_t buf = uv_buf_init(bytes.data(), 1);
  EXPECT_EQ(socket.write(&buf, 1), UV_EPIPE);
  EXPECT_EQ(socket.writeNow(&buf, 1), Socket::WriteStatus::Error);
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace loopguard::net
