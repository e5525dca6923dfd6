#include "offload/runtime_dir.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace loopguard::offload {

namespace {

// sun_path holds 108 bytes with the NUL; keep well clear of it.
constexpr size_t kMaxSocketPath = 100;

bool usableBase(const char* dir) {
  if (dir == nullptr || *dir != '/') return false;
  struct stat st{};
  return ::stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && ::access(dir, W_OK | X_OK) == 0 &&
         std::strlen(dir) < 60;
}

}  // namespace

RuntimeDir::~RuntimeDir() {
  if (path_.empty()) return;
  // Only sockets (and stray files) of our own workers live here: one level, no recursion.
  if (DIR* d = ::opendir(path_.c_str())) {
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(path_ + "/" + name);
    }
    ::closedir(d);
    for (const std::string& n : names) ::unlink(n.c_str());
  }
  ::rmdir(path_.c_str());
}

bool RuntimeDir::create(std::string& error) {
  if (!path_.empty()) return true;
  const char* base = std::getenv("XDG_RUNTIME_DIR");
  if (!usableBase(base)) base = "/tmp";
  std::string templ = std::string(base) + "/loopguard-" + std::to_string(::getpid()) + "-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    error = "cannot create a directory for worker sockets (" + templ + "): " + std::strerror(errno);
    return false;
  }
  path_ = buf.data();
  return true;
}

std::string RuntimeDir::socketPath(const std::string& pool, uint32_t index,
                                   uint64_t generation) const {
  std::string tail = "." + std::to_string(index) + "." + std::to_string(generation) + ".sock";
  size_t room = kMaxSocketPath > path_.size() + 1 + tail.size()
                    ? kMaxSocketPath - path_.size() - 1 - tail.size()
                    : 0;
  // Pool names are [A-Za-z0-9_.-]: safe in a file name; only their length needs a bound.
  return path_ + "/" + pool.substr(0, std::min<size_t>(room, 24)) + tail;
}

uint16_t RuntimeDir::freeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  uint16_t port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace loopguard::offload
