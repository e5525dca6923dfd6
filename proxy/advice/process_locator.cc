#include "proxy/advice/process_locator.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <unordered_map>

namespace loopguard::advice {

// ---- on the loop ----------------------------------------------------------------------------

bool describeSocket(int fd, SocketPeer& out) {
  socklen_t len = sizeof out.local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&out.local), &len) != 0) return false;
  len = sizeof out.peer;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&out.peer), &len) != 0) return false;
  char host[INET6_ADDRSTRLEN] = {0};
  switch (out.peer.ss_family) {
    case AF_INET: {
      auto* a = reinterpret_cast<sockaddr_in*>(&out.peer);
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
      out.peer_name = std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
      out.kind = SocketPeer::Kind::Tcp;
      return true;
    }
    case AF_INET6: {
      auto* a = reinterpret_cast<sockaddr_in6*>(&out.peer);
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
      out.peer_name = "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
      out.kind = SocketPeer::Kind::Tcp;
      return true;
    }
    case AF_UNIX: {
      auto* a = reinterpret_cast<sockaddr_un*>(&out.peer);
      size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      out.peer_name = "unix:" + std::string(a->sun_path, strnlen(a->sun_path, n));
      struct stat st {};
      if (fstat(fd, &st) != 0) return false;
      out.inode = st.st_ino;
      out.kind = SocketPeer::Kind::Unix;
      return true;
    }
    default:
      return false;
  }
}

// ---- pure helpers -----------------------------------------------------------------------------

bool parseSocketLink(std::string_view link, uint64_t& inode) {
  constexpr std::string_view kPrefix = "socket:[";
  if (link.size() <= kPrefix.size() + 1 || link.substr(0, kPrefix.size()) != kPrefix ||
      link.back() != ']') {
    return false;
  }
  uint64_t v = 0;
  for (char c : link.substr(kPrefix.size(), link.size() - kPrefix.size() - 1)) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  inode = v;
  return true;
}

bool parseStatStartTime(std::string_view stat, uint64_t& start_time) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so count from the last ')'.
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return false;
  std::string_view rest = stat.substr(close + 1);
  // Fields after comm: state is field 3 of the line; starttime is field 22, the 20th here.
  int field = 0;
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    size_t j = i;
    while (j < rest.size() && rest[j] != ' ' && rest[j] != '\n') ++j;
    if (j == i) break;
    if (++field == 20) {
      uint64_t v = 0;
      for (char c : rest.substr(i, j - i)) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      start_time = v;
      return true;
    }
    i = j;
  }
  return false;
}

// ---- off the loop ------------------------------------------------------------------------------

namespace {

// A NETLINK_SOCK_DIAG socket, opened once per batch of lookups.
class DiagSocket {
 public:
  DiagSocket() : fd_(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) {
    error_ = fd_ < 0 ? errno : 0;
    if (fd_ >= 0) {
      timeval timeout{1, 0};
      setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    }
  }
  ~DiagSocket() {
    if (fd_ >= 0) close(fd_);
  }
  DiagSocket(const DiagSocket&) = delete;
  DiagSocket& operator=(const DiagSocket&) = delete;

  // One request; the inode (0 if the socket has no file yet) or -errno.
  int64_t query(const void* request, size_t request_len, bool unix_peer);

 private:
  int fd_;
  int error_;
  uint32_t seq_ = 0;
};

int64_t DiagSocket::query(const void* request, size_t request_len, bool unix_peer) {
  if (fd_ < 0) return -error_;
  struct {
    nlmsghdr header;
    char body[64];
  } message{};
  message.header.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(request_len));
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.header.nlmsg_seq = ++seq_;
  std::memcpy(message.body, request, request_len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd_, &message, message.header.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof kernel) < 0) {
    return -errno;
  }
  alignas(nlmsghdr) char buf[8192];
  for (;;) {  // skip a late answer to an earlier request that timed out
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return -errno;
    auto* first = reinterpret_cast<nlmsghdr*>(buf);
    if (NLMSG_OK(first, static_cast<uint32_t>(n)) && first->nlmsg_seq != seq_) continue;
    for (auto* h = first; NLMSG_OK(h, static_cast<uint32_t>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        return err->error != 0 ? err->error : -ENOENT;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      if (!unix_peer) {
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return -EPROTO;
        return static_cast<inet_diag_msg*>(NLMSG_DATA(h))->idiag_inode;
      }
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg))) return -EPROTO;
      auto* msg = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
      int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *msg));
      for (auto* a = reinterpret_cast<nlattr*>(msg + 1);
           len >= static_cast<int>(sizeof(nlattr)) && a->nla_len >= sizeof(nlattr) &&
           a->nla_len <= len;
           len -= NLA_ALIGN(a->nla_len),
                a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(a) + NLA_ALIGN(a->nla_len))) {
        if (a->nla_type == UNIX_DIAG_PEER && a->nla_len >= NLA_HDRLEN + sizeof(uint32_t)) {
          uint32_t peer = 0;
          std::memcpy(&peer, reinterpret_cast<char*>(a) + NLA_HDRLEN, sizeof peer);
          return peer;
        }
      }
      return 0;  // no peer yet
    }
    return -ENOENT;
  }
}

// The app's end of a TCP connection: local = our peer, remote = us. An app listening on a
// dual-stack socket sees IPv4 clients as v4-mapped IPv6, so that is tried too.
int64_t tcpPeerInode(DiagSocket& diag, const SocketPeer& p) {
  inet_diag_req_v2 req{};
  req.sdiag_protocol = IPPROTO_TCP;
  req.idiag_states = ~0u;
  req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  if (p.peer.ss_family == AF_INET) {
    auto* peer = reinterpret_cast<const sockaddr_in*>(&p.peer);
    auto* local = reinterpret_cast<const sockaddr_in*>(&p.local);
    req.sdiag_family = AF_INET;
    req.id.idiag_sport = peer->sin_port;
    req.id.idiag_dport = local->sin_port;
    std::memcpy(req.id.idiag_src, &peer->sin_addr, 4);
    std::memcpy(req.id.idiag_dst, &local->sin_addr, 4);
    int64_t r = diag.query(&req, sizeof req, false);
    if (r != -ENOENT) return r;
    req.sdiag_family = AF_INET6;
    uint32_t mapped_src[4] = {0, 0, htonl(0xffff), 0}, mapped_dst[4] = {0, 0, htonl(0xffff), 0};
    std::memcpy(&mapped_src[3], &peer->sin_addr, 4);
    std::memcpy(&mapped_dst[3], &local->sin_addr, 4);
    std::memcpy(req.id.idiag_src, mapped_src, 16);
    std::memcpy(req.id.idiag_dst, mapped_dst, 16);
    return diag.query(&req, sizeof req, false);
  }
  auto* peer = reinterpret_cast<const sockaddr_in6*>(&p.peer);
  auto* local = reinterpret_cast<const sockaddr_in6*>(&p.local);
  req.sdiag_family = AF_INET6;
  req.id.idiag_sport = peer->sin6_port;
  req.id.idiag_dport = local->sin6_port;
  std::memcpy(req.id.idiag_src, &peer->sin6_addr, 16);
  std::memcpy(req.id.idiag_dst, &local->sin6_addr, 16);
  return diag.query(&req, sizeof req, false);
}

int64_t unixPeerInode(DiagSocket& diag, const SocketPeer& p) {
  unix_diag_req req{};
  req.sdiag_family = AF_UNIX;
  req.udiag_states = ~0u;
  req.udiag_ino = static_cast<uint32_t>(p.inode);
  req.udiag_show = UDIAG_SHOW_PEER;
  req.udiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
  return diag.query(&req, sizeof req, true);
}

bool readSmallFile(const std::string& path, std::string& out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  if (n <= 0) return false;
  out.assign(buf, static_cast<size_t>(n));
  return true;
}

bool startTimeOf(int pid, uint64_t& start_time) {
  std::string stat;
  return readSmallFile("/proc/" + std::to_string(pid) + "/stat", stat) &&
         parseStatStartTime(stat, start_time);
}

// The queries still waiting for a process, by the inode of the app's end.
class WantedInodes {
 public:
  explicit WantedInodes(std::span<LocateQuery> queries) : queries_(queries) {}
  void add(uint64_t inode, size_t query) { by_inode_[inode].push_back(query); }
  bool empty() const { return by_inode_.empty(); }

  // One pass over `pid`'s open files, resolving every query whose inode it holds. Reading a
  // process's fds costs one readlink per fd: a batch pays it once for all its queries.
  void scan(int pid) {
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) {
      denied_ |= errno == EACCES || errno == EPERM;
      return;
    }
    ProcessId process{pid, 0};
    char link[64];
    while (!by_inode_.empty()) {
      dirent* entry = readdir(d);
      if (entry == nullptr) break;
      if (entry->d_name[0] == '.') continue;
      ssize_t n = readlinkat(dirfd(d), entry->d_name, link, sizeof link - 1);
      uint64_t inode = 0;
      if (n <= 0 || !parseSocketLink(std::string_view(link, static_cast<size_t>(n)), inode)) {
        continue;
      }
      auto it = by_inode_.find(inode);
      if (it == by_inode_.end()) continue;
      if (process.start_time == 0 && !startTimeOf(pid, process.start_time)) break;  // it exited
      for (size_t q : it->second) {
        queries_[q].result.status = LocateStatus::Found;
        queries_[q].result.process = process;
      }
      by_inode_.erase(it);
    }
    closedir(d);
  }

  // The socket has a file, so some process holds it: one we may not look into, or one in
  // another pid namespace.
  void giveUp() {
    for (auto& [inode, waiting] : by_inode_) {
      for (size_t q : waiting) {
        queries_[q].result.why =
            denied_ ? "the app's processes are not readable here (another user: needs the same "
                      "uid or CAP_SYS_PTRACE)"
                    : "the app's process is not visible here (another pid namespace? in "
                      "Kubernetes, set shareProcessNamespace)";
      }
    }
    by_inode_.clear();
  }

 private:
  std::span<LocateQuery> queries_;
  std::unordered_map<uint64_t, std::vector<size_t>> by_inode_;
  bool denied_ = false;
};

}  // namespace

void locateProcesses(std::span<LocateQuery> queries, const std::vector<int>& candidates) {
  DiagSocket diag;
  WantedInodes wanted(queries);
  for (size_t i = 0; i < queries.size(); ++i) {
    LocateResult& r = queries[i].result;
    r = LocateResult{};
    const SocketPeer& peer = queries[i].peer;
    int64_t inode = -ENOENT;
    if (peer.kind == SocketPeer::Kind::Tcp) {
      inode = tcpPeerInode(diag, peer);
    } else if (peer.kind == SocketPeer::Kind::Unix) {
      inode = unixPeerInode(diag, peer);
    }
    if (inode == -ENOENT) {
      r.why = "the app's end of the connection is not in this network namespace (another host?)";
    } else if (inode < 0) {
      r.why = std::string("sock_diag: ") + std::strerror(static_cast<int>(-inode));
    } else if (inode == 0) {
      r.status = LocateStatus::NotYet;
    } else {
      wanted.add(static_cast<uint64_t>(inode), i);
    }
  }
  const int self = getpid();
  for (int pid : candidates) {
    if (wanted.empty()) return;
    if (pid != self) wanted.scan(pid);
  }
  if (DIR* d = opendir("/proc")) {
    while (!wanted.empty()) {
      dirent* entry = readdir(d);
      if (entry == nullptr) break;
      char* end = nullptr;
      long pid = std::strtol(entry->d_name, &end, 10);
      if (end == entry->d_name || *end != '\0' || pid <= 0 || pid == self) continue;
      if (std::find(candidates.begin(), candidates.end(), pid) != candidates.end()) continue;
      wanted.scan(static_cast<int>(pid));
    }
    closedir(d);
  }
  wanted.giveUp();
}

LocateResult locateProcess(const SocketPeer& peer, const std::vector<int>& candidates) {
  LocateQuery query{peer, {}};
  locateProcesses(std::span<LocateQuery>(&query, 1), candidates);
  return query.result;
}

// ---- async wrapper ----------------------------------------------------------------------------

struct ProcessLocator::Batch {
  uv_work_t req{};
  ProcessLocator* owner = nullptr;  // null once the locator is gone
  std::vector<LocateQuery> queries;
  std::vector<Done> done;
  std::vector<int> candidates;
  int64_t cpu_ns = 0;  // the thread's CPU time for the batch: what paces the next one
};

ProcessLocator::ProcessLocator(uv_loop_t* loop)
    : loop_(loop), pace_timer_(loop, this, &uv::bindTimer<ProcessLocator, &ProcessLocator::startBatch>) {}

ProcessLocator::~ProcessLocator() {
  if (running_ != nullptr) {
    // The thread may be in it: orphan it; the after-work callback frees it.
    running_->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&running_->req));
    running_.release();
  }
}

bool ProcessLocator::locate(const SocketPeer& peer, const std::vector<int>& candidates, Done done) {
  if (!canQueue()) return false;
  pending_.push_back(LocateQuery{peer, {}});
  pending_done_.push_back(std::move(done));
  for (auto it = candidates.rbegin(); it != candidates.rend(); ++it) {
    auto known = std::find(candidates_.begin(), candidates_.end(), *it);
    if (known != candidates_.end()) candidates_.erase(known);
    candidates_.insert(candidates_.begin(), *it);
  }
  if (candidates_.size() > kMaxCandidates) candidates_.resize(kMaxCandidates);
  if (running_ == nullptr && !pace_timer_.active()) {
    const uint64_t now = uv_now(loop_);
    pace_timer_.start(next_start_ms_ > now ? next_start_ms_ - now : 0);
    pace_timer_.unref();
  }
  return true;
}

void ProcessLocator::startBatch() {
  if (running_ != nullptr || pending_.empty()) return;
  auto batch = std::make_unique<Batch>();
  batch->owner = this;
  batch->queries = std::move(pending_);
  batch->done = std::move(pending_done_);
  batch->candidates = candidates_;
  pending_.clear();
  pending_done_.clear();
  batch->req.data = batch.get();
  int rc = uv_queue_work(
      loop_, &batch->req,
      [](uv_work_t* req) {
        auto* b = static_cast<Batch*>(req->data);
        timespec start{}, end{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
        locateProcesses(b->queries, b->candidates);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &end);
        b->cpu_ns = (end.tv_sec - start.tv_sec) * 1'000'000'000LL + (end.tv_nsec - start.tv_nsec);
      },
      [](uv_work_t* req, int status) {
        auto* b = static_cast<Batch*>(req->data);
        if (b->owner == nullptr) {  // the locator is gone and left the batch to this callback
          std::unique_ptr<Batch> orphan(b);
          return;
        }
        b->owner->onBatchDone(status);
      });
  if (rc != 0) {  // only without a work callback: answer rather than leave anyone waiting
    for (size_t i = 0; i < batch->queries.size(); ++i) {
      batch->queries[i].result.why = std::string("thread pool: ") + uv_strerror(rc);
      batch->done[i](batch->queries[i].result);
    }
    return;
  }
  running_ = std::move(batch);
}

void ProcessLocator::onBatchDone(int status) {
  std::unique_ptr<Batch> batch = std::move(running_);
  // Spend at most 1/kPaceFactor of a core on lookups: under connection churn (thousands of new
  // upstream connections a second, each a readlink per open fd of the app) the advisor then
  // looks up a sample of the connections rather than costing the proxy a core.
  next_start_ms_ = uv_now(loop_) + std::max<uint64_t>(
                                       1, static_cast<uint64_t>(batch->cpu_ns) * kPaceFactor /
                                              1'000'000);
  if (status == 0) {
    for (size_t i = 0; i < batch->queries.size(); ++i) batch->done[i](batch->queries[i].result);
  }
  if (!pending_.empty() && !pace_timer_.active()) {
    pace_timer_.start(next_start_ms_ - uv_now(loop_));
    pace_timer_.unref();
  }
}

}  // namespace loopguard::advice
