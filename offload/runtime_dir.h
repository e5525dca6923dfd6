// The private directory that holds the workers' unix sockets: made at start-up (mode 0700,
// under $XDG_RUNTIME_DIR when usable, else /tmp), removed with everything in it at exit. Also
// hands out free loopback ports for `{port}` workers.
#pragma once

#include <cstdint>
#include <string>

namespace loopguard::offload {

class RuntimeDir {
 public:
  RuntimeDir() = default;
  ~RuntimeDir();  // removes the directory and what is left in it
  RuntimeDir(const RuntimeDir&) = delete;
  RuntimeDir& operator=(const RuntimeDir&) = delete;

  // Creates the directory (once), after removing those left by loopguard processes that no
  // longer exist (killed with SIGKILL, say). False with `error` set on failure.
  bool create(std::string& error);
  const std::string& path() const { return path_; }

  // A socket path for one worker process. `generation` makes every process's path unique, so
  // a replacement can listen while the worker it replaces still finishes its requests.
  std::string socketPath(const std::string& pool, uint32_t index, uint64_t generation) const;

  // A loopback port that was free a moment ago (bind to port 0, read it, close). 0 on failure.
  // Racy by nature: another process may take it before the worker binds it; the worker then
  // fails to start and is restarted with another port.
  static uint16_t freeLoopbackPort();

 private:
  std::string path_;
};

}  // namespace loopguard::offload
