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
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/uv/timer.h"

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

// One connection to look up, and the answer.
struct LocateQuery {
  SocketPeer peer;
  LocateResult result;
};

// Blocking. `candidates`: pids that served this endpoint before, searched first. A batch costs
// one netlink socket and one pass over each process's open files, however many queries it holds.
void locateProcesses(std::span<LocateQuery> queries, const std::vector<int>& candidates);
LocateResult locateProcess(const SocketPeer& peer, const std::vector<int>& candidates);

// Pure helpers, exposed for the unit tests.
bool parseSocketLink(std::string_view link, uint64_t& inode);  // "socket:[12345]"
bool parseStatStartTime(std::string_view stat, uint64_t& start_time);

// Runs lookups on libuv's thread pool, in batches: one batch at a time, each taking every lookup
// queued meanwhile, the next one starting no sooner than kPaceFactor times the CPU time the last
// one took. So the lookups cost at most ~2% of a core whatever the connection churn: at a
// thousand new upstream connections a second, a sample of them is looked up (the rest are
// refused by locate() and their requests go unobserved). `done` runs on the loop, unless the
// locator was destroyed first (a running batch is then orphaned and freed when it completes).
class ProcessLocator {
 public:
  using Done = std::function<void(const LocateResult&)>;
  static constexpr size_t kMaxPending = 64;
  static constexpr size_t kMaxCandidates = 64;
  static constexpr uint64_t kPaceFactor = 49;

  explicit ProcessLocator(uv_loop_t* loop);
  ~ProcessLocator();
  ProcessLocator(const ProcessLocator&) = delete;
  ProcessLocator& operator=(const ProcessLocator&) = delete;

  // False when a lookup queued now would be refused: check before describing a socket.
  bool canQueue() const { return pending_.size() < kMaxPending; }
  // Queues a lookup for the next batch; false (and `done` is dropped) when !canQueue().
  bool locate(const SocketPeer& peer, const std::vector<int>& candidates, Done done);

 private:
  struct Batch;
  void startBatch();
  void onBatchDone(int status);

  uv_loop_t* loop_;
  std::vector<LocateQuery> pending_;
  std::vector<Done> pending_done_;
  std::vector<int> candidates_;  // pids that held an endpoint's connections, most recent first
  std::unique_ptr<Batch> running_;
  uint64_t next_start_ms_ = 0;  // loop time before which no batch starts (pacing)
  uv::Timer pace_timer_;
};

}  // namespace loopguard::advice
