// How loopguard makes sure a worker dies with it even when loopguard itself is killed (SIGKILL,
// a crash): libuv spawns with fork+exec and runs no code of ours in the child, so a worker is
// started through loopguard's own binary in a tiny mode that sets PR_SET_PDEATHSIG and then
// execs the real command (same pid, same process group). A graceful stop never relies on it:
// loopguard stops every worker itself; this only covers the exits it cannot handle.
#pragma once

#include <string>
#include <vector>

namespace loopguard::offload {

inline constexpr const char* kExecWrapperArg = "__exec-child";

// argv for uv_spawn: the loopguard binary in wrapper mode, then `command`. Exec'ing
// /proc/self/exe from the forked child re-runs the very binary that is running, even if the
// file was replaced on disk since.
std::vector<std::string> wrapCommand(const std::vector<std::string>& command);
inline constexpr const char* kSelfExe = "/proc/self/exe";

// The wrapper mode (argv[1] == kExecWrapperArg): never returns on success. On failure prints
// why on stderr and returns the exit code (127: not found, 126: not executable).
int runExecWrapper(int argc, char** argv);

}  // namespace loopguard::offload
