// Which process is at the other end of an upstream connection. An upstream endpoint may be
// several processes behind one port (`uvicorn --workers 2`); a keep-alive connection stays on
// the one that accepted it, and the statistics must be kept per process.
//
// How: the kernel's sock_diag tells the inode of the app's end of the connection (TCP: the
// socket whose local address is our peer and whose peer is us; unix: our socket's peer), and
// /proc/PID/fd tells which process holds that inode. That works when loopguard can see the app's
// processes: same host, or a Kubernetes pod with shareProcessNamespace (and the same user, or
// CAP_SYS_PTRACE). Otherwise the answer is Unlocatable and the advisor keeps one stream per
// endpoint address, and says so.
//
// describeSocket() runs on the loop (three cheap syscalls, once per new connection);
// locateProcess() blocks (netlink, /proc) and runs on libuv's thread pool via ProcessLocator.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace loopguard::advice {

struct SocketPeer {
  enum class Kind { Unknown, Tcp, Unix };
  Kind kind = Kind::Unknown;
  sockaddr_storage local{};  // TCP: our end
  sockaddr_storage peer{};   // TCP: the app's end
  uint64_t inode = 0;        // unix: our socket's inode
  std::string peer_name;     // the endpoint address: "127.0.0.1:8000", "[::1]:8000", "unix:/path"
};

// Fills `out` from a connected socket's fd. False if it is neither TCP nor a unix stream.
bool describeSocket(int fd, SocketPeer& out);

struct ProcessId {
  int pid = 0;
  uint64_t start_time = 0;  // /proc/PID/stat field 22: tells a reused pid apart
  bool operator==(const ProcessId&) const = default;
};

enum class LocateStatus {
  Found,        // `process` holds the app's end
  NotYet,       // the app has not accepted the connection yet (its end has no file): retry
  Unlocatable,  // another host or namespace, or no permission: `why` says which
};

struct LocateResult {
  LocateStatus status = LocateStatus::Unlocatable;
  ProcessId process;
  std::string why;
};

// Blocking. `candidates`: pids that served this endpoint before, searched first.
LocateResult locateProcess(const SocketPeer& peer, const std::vector<int>& candidates);

// Pure helpers, exposed for the unit tests.
bool parseSocketLink(std::string_view link, uint64_t& inode);  // "socket:[12345]"
bool parseStatStartTime(std::string_view stat, uint64_t& start_time);

// Runs locateProcess() on libuv's thread pool. `done` runs on the loop, unless the locator was
// destroyed first (in-flight lookups are then orphaned and freed when they complete).
class ProcessLocator {
 public:
  using Done = std::function<void(const LocateResult&)>;
  static constexpr size_t kMaxInFlight = 16;

  explicit ProcessLocator(uv_loop_t* loop) : loop_(loop) {}
  ~ProcessLocator();
  ProcessLocator(const ProcessLocator&) = delete;
  ProcessLocator& operator=(const ProcessLocator&) = delete;

  // False (and `done` is dropped) when kMaxInFlight lookups are running already.
  bool locate(const SocketPeer& peer, std::vector<int> candidates, Done done);
  size_t inFlight() const { return jobs_.size(); }

 private:
  struct Job;
  uv_loop_t* loop_;
  std::vector<Job*> jobs_;
};

}  // namespace loopguard::advice
