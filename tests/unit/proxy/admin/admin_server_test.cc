// AdminServer on a private loop, with plain blocking-connect clients: a connection is held by
// the server until its socket's close callback, then retired (deleted at the end of that loop
// turn), and close() leaves nothing open. Under ASan/LSan a connection deleted too early, or
// retired and never freed, fails here.
#include "proxy/admin/admin_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "tests/unit/support/loop_runner.h"
#include "tests/unit/support/socket_pair.h"

namespace loopguard::admin {
namespace {

using loopguard::testing::readAvailable;
using loopguard::testing::runUntil;

// A non-blocking client connected to `port` on loopback (the kernel completes the handshake
// from the listen backlog; the server accepts when its loop runs).
int connectTo(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

// True once the peer closed: a read returns 0. What arrived before is appended to `got`.
bool peerClosed(int fd, std::string& got) {
  got += readAvailable(fd);
  char c;
  return ::read(fd, &c, 1) == 0;
}

TEST(AdminServer, ConnectionsLiveUntilTheirCloseCallbackAndCloseLeavesNothingOpen) {
  uv::Loop loop;
  int requests = 0;
  {
    AdminServer admin(loop.get(), [&](const AdminRequest& r) {
      ++requests;
      return AdminResponse{200, "text/plain", "seen " + r.path + "\n"};
    });
    config::Address listen;
    listen.host = "127.0.0.1";
    std::string error;
    ASSERT_TRUE(admin.start(listen, error)) << error;
    const std::string& bound = admin.boundAddress();
    auto port = static_cast<uint16_t>(std::stoi(bound.substr(bound.rfind(':') + 1)));

    // One that never sends, connected first so that it is accepted by the time the second one
    // is answered (the backlog is accepted in order).
    int silent = connectTo(port);
    // One answered and closed by the server; its close callback hands it back to be retired.
    int answered = connectTo(port);
    const std::string get = "GET /status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
    ASSERT_EQ(::write(answered, get.data(), get.size()), static_cast<ssize_t>(get.size()));
    std::string response;
    ASSERT_TRUE(runUntil(loop, [&] { return peerClosed(answered, response); }));
    EXPECT_EQ(requests, 1);
    EXPECT_NE(response.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << response;
    EXPECT_NE(response.find("seen /status\n"), std::string::npos) << response;

    // The silent one is still open; close() closes it.
    std::string nothing;
    EXPECT_FALSE(peerClosed(silent, nothing));
    admin.close();
    ASSERT_TRUE(runUntil(loop, [&] { return peerClosed(silent, nothing); }));
    EXPECT_EQ(nothing, "");
    ::close(answered);
    ::close(silent);
    // The close callbacks run and the retired connections are deleted before the server is.
    EXPECT_EQ(loop.close(), 0);
  }
  EXPECT_EQ(requests, 1);
}

}  // namespace
}  // namespace loopguard::admin
