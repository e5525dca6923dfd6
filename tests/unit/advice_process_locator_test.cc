// Which process holds the other end of a connection: real sockets, a forked child that accepts.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "proxy/advice/process_locator.h"

namespace loopguard::advice {
namespace {

TEST(AdviceProcessLocator, ParsesProcFiles) {
  uint64_t inode = 0;
  EXPECT_TRUE(parseSocketLink("socket:[123456]", inode));
  EXPECT_EQ(inode, 123456u);
  EXPECT_FALSE(parseSocketLink("pipe:[12]", inode));
  EXPECT_FALSE(parseSocketLink("socket:[]", inode));
  EXPECT_FALSE(parseSocketLink("socket:[12a]", inode));
  uint64_t start = 0;
  // comm with spaces and parentheses: fields are counted from the last ')'.
  std::string stat = "4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 "
                     "987654 1000 10 18446744073709551615";
  EXPECT_TRUE(parseStatStartTime(stat, start));
  EXPECT_EQ(start, 987654u);
  EXPECT_FALSE(parseStatStartTime("garbage", start));
}

// A child process that accepts one connection on `listener` (once told to), then holds it until
// the parent hangs up.
struct Acceptor {
  pid_t pid = -1;
  int go[2] = {-1, -1};    // parent -> child: accept now
  int done[2] = {-1, -1};  // child -> parent: accepted

  explicit Acceptor(int listener) {
    EXPECT_EQ(pipe(go), 0);
    EXPECT_EQ(pipe(done), 0);
    pid = fork();
    if (pid == 0) {
      char c;
      if (read(go[0], &c, 1) != 1) _exit(1);
      int conn = ::accept(listener, nullptr, nullptr);
      if (write(done[1], "x", 1) != 1) _exit(1);
      while (read(conn, &c, 1) > 0) {
      }
      _exit(0);
    }
  }
  void accept() {
    ASSERT_EQ(write(go[1], "x", 1), 1);
    char c;
    ASSERT_EQ(read(done[0], &c, 1), 1);
  }
  ~Acceptor() {
    if (pid > 0) {
      int status = 0;
      waitpid(pid, &status, 0);
    }
    for (int fd : {go[0], go[1], done[0], done[1]}) close(fd);
  }
};

TEST(AdviceProcessLocator, FindsTheProcessBehindATcpConnection) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  {
    Acceptor child(listener);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    SocketPeer peer;
    ASSERT_TRUE(describeSocket(client, peer));
    EXPECT_EQ(peer.kind, SocketPeer::Kind::Tcp);
    EXPECT_EQ(peer.peer_name, "127.0.0.1:" + std::to_string(ntohs(addr.sin_port)));
    // Not accepted yet: its end has no file, so no process holds it.
    EXPECT_EQ(locateProcess(peer, {}).status, LocateStatus::NotYet);
    child.accept();
    LocateResult r = locateProcess(peer, {});
    ASSERT_EQ(r.status, LocateStatus::Found) << r.why;
    EXPECT_EQ(r.process.pid, child.pid);
    EXPECT_GT(r.process.start_time, 0u);
    EXPECT_EQ(locateProcess(peer, {child.pid}).process, r.process);  // the candidate path
    close(client);
  }
  close(listener);
}

TEST(AdviceProcessLocator, FindsTheProcessBehindAUnixConnection) {
  std::string path = "/tmp/lg-advice-" + std::to_string(getpid()) + ".sock";
  unlink(path.c_str());
  int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  {
    Acceptor child(listener);
    int client = socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    SocketPeer peer;
    ASSERT_TRUE(describeSocket(client, peer));
    EXPECT_EQ(peer.kind, SocketPeer::Kind::Unix);
    EXPECT_EQ(peer.peer_name, "unix:" + path);
    child.accept();
    LocateResult r = locateProcess(peer, {});
    ASSERT_EQ(r.status, LocateStatus::Found) << r.why;
    EXPECT_EQ(r.process.pid, child.pid);
    close(client);
  }
  close(listener);
  unlink(path.c_str());
}

}  // namespace
}  // namespace loopguard::advice
