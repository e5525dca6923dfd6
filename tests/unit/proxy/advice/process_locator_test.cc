// Which process holds the other end of a connection: real sockets, a forked child that accepts.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <uv.h>

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

// A child process that accepts `count` connections on `listener` (once told to), then holds them
// until the parent hangs up.
struct Acceptor {
  pid_t pid = -1;
  int go[2] = {-1, -1};    // parent -> child: accept now
  int done[2] = {-1, -1};  // child -> parent: accepted

  explicit Acceptor(int listener, int count = 1) {
    EXPECT_EQ(pipe(go), 0);
    EXPECT_EQ(pipe(done), 0);
    pid = fork();
    if (pid == 0) {
      char c;
      if (read(go[0], &c, 1) != 1) _exit(1);
      std::vector<int> conns;
      for (int i = 0; i < count; ++i) conns.push_back(::accept(listener, nullptr, nullptr));
      if (write(done[1], "x", 1) != 1) _exit(1);
      for (int conn : conns) {
        while (read(conn, &c, 1) > 0) {
        }
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

// A TCP listener on 127.0.0.1, any port; `addr` is where it listens. -1 on failure.
int loopbackListener(sockaddr_in& addr) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  addr = sockaddr_in{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listener, 8) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(listener);
    return -1;
  }
  return listener;
}

TEST(AdviceProcessLocator, FindsTheProcessBehindATcpConnection) {
  sockaddr_in addr;
  int listener = loopbackListener(addr);
  ASSERT_GE(listener, 0);
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

// The async locator answers every lookup queued before its batch started in one pass, from the
// loop, and leaves nothing behind on the loop once it is gone.
TEST(AdviceProcessLocator, AnswersABatchFromTheLoop) {
  sockaddr_in addr;
  int listener = loopbackListener(addr);
  ASSERT_GE(listener, 0);
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  {
    constexpr int kConnections = 3;
    Acceptor child(listener, kConnections);
    struct Clients : std::vector<int> {  // closed before the child is waited for
      ~Clients() {
        for (int fd : *this) close(fd);
      }
    } clients;
    std::vector<SocketPeer> peers(kConnections);
    for (int i = 0; i < kConnections; ++i) {
      clients.push_back(socket(AF_INET, SOCK_STREAM, 0));
      ASSERT_EQ(connect(clients.back(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
      ASSERT_TRUE(describeSocket(clients.back(), peers[static_cast<size_t>(i)]));
    }
    child.accept();
    std::vector<LocateResult> answers;
    {
      ProcessLocator locator(&loop);
      for (const SocketPeer& peer : peers) {
        ASSERT_TRUE(locator.locate(peer, {}, [&](const LocateResult& r) {
          answers.push_back(r);
        }));
        EXPECT_TRUE(answers.empty());  // never from the call that queued it
      }
      // The locator's timer does not keep a loop alive (unref): this one does, for 10 s at most.
      uv_timer_t keepalive;
      uv_timer_init(&loop, &keepalive);
      uv_timer_start(&keepalive, [](uv_timer_t*) {}, 10, 10);
      const uint64_t deadline = uv_now(&loop) + 10'000;
      while (answers.size() < peers.size() && uv_now(&loop) < deadline) {
        uv_run(&loop, UV_RUN_ONCE);
      }
      uv_close(reinterpret_cast<uv_handle_t*>(&keepalive), nullptr);
    }
    ASSERT_EQ(answers.size(), peers.size());
    for (const LocateResult& r : answers) {
      EXPECT_EQ(r.status, LocateStatus::Found) << r.why;
      EXPECT_EQ(r.process.pid, child.pid);
    }
  }
  close(listener);
  uv_run(&loop, UV_RUN_DEFAULT);  // the pace timer's close
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

// A locator destroyed with lookups queued and a batch running frees everything; no answer
// reaches a caller that is gone.
TEST(AdviceProcessLocator, DestroyedWhileLookingUp) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  SocketPeer peer;
  ASSERT_TRUE(describeSocket(fds[0], peer));
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  int answered = 0;
  {
    ProcessLocator locator(&loop);
    for (size_t i = 0; i < ProcessLocator::kMaxPending; ++i) {
      ASSERT_TRUE(locator.locate(peer, {}, [&](const LocateResult&) { ++answered; }));
    }
    EXPECT_FALSE(locator.canQueue());
    EXPECT_FALSE(locator.locate(peer, {}, [&](const LocateResult&) { ++answered; }));
    uv_run(&loop, UV_RUN_NOWAIT);  // the batch starts on the thread pool
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(answered, 0);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace loopguard::advice
