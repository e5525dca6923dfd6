#include "offload/runtime_dir.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
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

// Removes `dir` and the files directly in it (worker sockets): one level, no recursion.
void removeDir(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(dir + "/" + name);
    }
    ::closedir(d);
    for (const std::string& n : names) ::unlink(n.c_str());
  }
  ::rmdir(dir.c_str());
}

// A loopguard that was SIGKILLed (or crashed) could not remove its directory. Directories named
// loopguard-<pid>-XXXXXX whose pid no longer exists are such leftovers; those of live processes
// (and anything not ours: we could not remove it anyway) are left alone.
void removeStaleDirs(const std::string& base) {
  DIR* d = ::opendir(base.c_str());
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (!name.starts_with("loopguard-")) continue;
    std::string_view rest = name.substr(10);
    size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string_view::npos || rest.size() - dash - 1 != 6) continue;
    std::string pid(rest.substr(0, dash));
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::strtol(pid.c_str(), nullptr, 10)), 0) == 0 ||
        errno != ESRCH) {
      continue;  // alive (or not ours to ask about)
    }
    stale.push_back(base + "/" + std::string(name));
  }
  ::closedir(d);
  for (const std::string& dir : stale) removeDir(dir);
}

}  // namespace

RuntimeDir::~RuntimeDir() {
  if (!path_.empty()) removeDir(path_);
}

bool RuntimeDir::create(std::string& error) {
  if (!path_.empty()) return true;
  const char* base = std::getenv("XDG_RUNTIME_DIR");
  if (!usableBase(base)) base = "/tmp";
  removeStaleDirs(base);
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
  // Appended piece by piece: `"." + std::to_string(...)` makes GCC 12 at -O3 warn about a
  // memcpy of 2^63 bytes (a false -Wrestrict in libstdc++'s insert, GCC bug 105329).
  std::string tail;
  tail.append(".").append(std::to_string(index)).append(".");
  tail.append(std::to_string(generation)).append(".sock");
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
