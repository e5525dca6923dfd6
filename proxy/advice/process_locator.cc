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

// One sock_diag request; the inode (0 if the socket has no file yet) or -errno.
int64_t sockDiag(const void* request, size_t request_len, bool unix_peer) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return -errno;
  struct {
    nlmsghdr header;
    char body[64];
  } message{};
  message.header.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(request_len));
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.header.nlmsg_seq = 1;
  std::memcpy(message.body, request, request_len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  timeval timeout{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (sendto(fd, &message, message.header.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof kernel) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  alignas(nlmsghdr) char buf[8192];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  int e = errno;
  close(fd);
  if (n < 0) return -e;
  for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<uint32_t>(n));
       h = NLMSG_NEXT(h, n)) {
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
    for (auto* a = reinterpret_cast<nlattr*>(msg + 1); len >= static_cast<int>(sizeof(nlattr)) &&
                                                       a->nla_len >= sizeof(nlattr) &&
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

// The app's end of a TCP connection: local = our peer, remote = us. An app listening on a
// dual-stack socket sees IPv4 clients as v4-mapped IPv6, so that is tried too.
int64_t tcpPeerInode(const SocketPeer& p) {
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
    int64_t r = sockDiag(&req, sizeof req, false);
    if (r != -ENOENT) return r;
    req.sdiag_family = AF_INET6;
    uint32_t mapped_src[4] = {0, 0, htonl(0xffff), 0}, mapped_dst[4] = {0, 0, htonl(0xffff), 0};
    std::memcpy(&mapped_src[3], &peer->sin_addr, 4);
    std::memcpy(&mapped_dst[3], &local->sin_addr, 4);
    std::memcpy(req.id.idiag_src, mapped_src, 16);
    std::memcpy(req.id.idiag_dst, mapped_dst, 16);
    return sockDiag(&req, sizeof req, false);
  }
  auto* peer = reinterpret_cast<const sockaddr_in6*>(&p.peer);
  auto* local = reinterpret_cast<const sockaddr_in6*>(&p.local);
  req.sdiag_family = AF_INET6;
  req.id.idiag_sport = peer->sin6_port;
  req.id.idiag_dport = local->sin6_port;
  std::memcpy(req.id.idiag_src, &peer->sin6_addr, 16);
  std::memcpy(req.id.idiag_dst, &local->sin6_addr, 16);
  return sockDiag(&req, sizeof req, false);
}

int64_t unixPeerInode(const SocketPeer& p) {
  unix_diag_req req{};
  req.sdiag_family = AF_UNIX;
  req.udiag_states = ~0u;
  req.udiag_ino = static_cast<uint32_t>(p.inode);
  req.udiag_show = UDIAG_SHOW_PEER;
  req.udiag_cookie[0] = INET_DIAG_NOCOOKIE;
  req.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
  return sockDiag(&req, sizeof req, true);
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

enum class FdSearch { Found, NotHere, NoAccess };

FdSearch holdsInode(int pid, uint64_t inode) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return errno == EACCES || errno == EPERM ? FdSearch::NoAccess : FdSearch::NotHere;
  FdSearch result = FdSearch::NotHere;
  char link[64];
  while (dirent* entry = readdir(d)) {
    if (entry->d_name[0] == '.') continue;
    ssize_t n = readlinkat(dirfd(d), entry->d_name, link, sizeof link - 1);
    if (n <= 0) continue;
    uint64_t found = 0;
    if (parseSocketLink(std::string_view(link, static_cast<size_t>(n)), found) && found == inode) {
      result = FdSearch::Found;
      break;
    }
  }
  closedir(d);
  return result;
}

bool startTimeOf(int pid, uint64_t& start_time) {
  std::string stat;
  return readSmallFile("/proc/" + std::to_string(pid) + "/stat", stat) &&
         parseStatStartTime(stat, start_time);
}

}  // namespace

LocateResult locateProcess(const SocketPeer& peer, const std::vector<int>& candidates) {
  LocateResult r;
  int64_t inode = -ENOENT;
  if (peer.kind == SocketPeer::Kind::Tcp) {
    inode = tcpPeerInode(peer);
  } else if (peer.kind == SocketPeer::Kind::Unix) {
    inode = unixPeerInode(peer);
  }
  if (inode == -ENOENT) {
    r.why = "the app's end of the connection is not in this network namespace (another host?)";
    return r;
  }
  if (inode < 0) {
    r.why = std::string("sock_diag: ") + std::strerror(static_cast<int>(-inode));
    return r;
  }
  if (inode == 0) {
    r.status = LocateStatus::NotYet;
    return r;
  }
  const int self = getpid();
  bool denied = false;
  auto check = [&](int pid) {
    if (pid == self) return false;
    FdSearch s = holdsInode(pid, static_cast<uint64_t>(inode));
    denied |= s == FdSearch::NoAccess;
    if (s != FdSearch::Found) return false;
    uint64_t start = 0;
    if (!startTimeOf(pid, start)) return false;
    r.status = LocateStatus::Found;
    r.process = ProcessId{pid, start};
    return true;
  };
  for (int pid : candidates) {
    if (check(pid)) return r;
  }
  if (DIR* d = opendir("/proc")) {
    while (dirent* entry = readdir(d)) {
      char* end = nullptr;
      long pid = std::strtol(entry->d_name, &end, 10);
      if (end == entry->d_name || *end != '\0' || pid <= 0) continue;
      if (std::find(candidates.begin(), candidates.end(), pid) != candidates.end()) continue;
      if (check(static_cast<int>(pid))) {
        closedir(d);
        return r;
      }
    }
    closedir(d);
  }
  // The socket has a file, so some process holds it: one we may not look into, or one in
  // another pid namespace.
  r.why = denied ? "the app's processes are not readable here (another user: needs the same "
                   "uid or CAP_SYS_PTRACE)"
                 : "the app's process is not visible here (another pid namespace? in Kubernetes, "
                   "set shareProcessNamespace)";
  return r;
}

// ---- async wrapper ----------------------------------------------------------------------------

struct ProcessLocator::Job {
  uv_work_t req{};
  ProcessLocator* owner = nullptr;  // null once the locator is gone
  SocketPeer peer;
  std::vector<int> candidates;
  LocateResult result;
  Done done;
};

ProcessLocator::~ProcessLocator() {
  for (Job* job : jobs_) {
    job->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&job->req));
  }
}

bool ProcessLocator::locate(const SocketPeer& peer, std::vector<int> candidates, Done done) {
  if (jobs_.size() >= kMaxInFlight) return false;
  auto* job = new Job;
  job->owner = this;
  job->peer = peer;
  job->candidates = std::move(candidates);
  job->done = std::move(done);
  job->req.data = job;
  int rc = uv_queue_work(
      loop_, &job->req,
      [](uv_work_t* req) {
        auto* j = static_cast<Job*>(req->data);
        j->result = locateProcess(j->peer, j->candidates);
      },
      [](uv_work_t* req, int status) {
        auto* j = static_cast<Job*>(req->data);
        if (j->owner != nullptr) {
          auto& jobs = j->owner->jobs_;
          jobs.erase(std::remove(jobs.begin(), jobs.end(), j), jobs.end());
          if (status == 0) j->done(j->result);
        }
        delete j;
      });
  if (rc != 0) {
    delete job;
    return false;
  }
  jobs_.push_back(job);
  return true;
}

}  // namespace loopguard::advice
