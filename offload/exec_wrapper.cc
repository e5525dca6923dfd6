#include "offload/exec_wrapper.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

namespace loopguard::offload {

std::vector<std::string> wrapCommand(const std::vector<std::string>& command) {
  std::vector<std::string> argv;
  argv.reserve(command.size() + 3);
  argv.emplace_back("loopguard");
  argv.emplace_back(kExecWrapperArg);
  argv.push_back(std::to_string(getpid()));
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

int runExecWrapper(int argc, char** argv) {
  // argv: loopguard __exec-child PARENT_PID PROGRAM [ARGS...]
  if (argc < 4) {
    fprintf(stderr, "loopguard: %s needs a parent pid and a command\n", kExecWrapperArg);
    return 2;
  }
  // SIGKILL: the parent is gone, nobody will wait for a graceful exit.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The parent may have died before the prctl: then no signal would ever come.
  if (getppid() != static_cast<pid_t>(strtol(argv[2], nullptr, 10))) return 1;
  execvp(argv[3], argv + 3);
  int err = errno;
  fprintf(stderr, "loopguard: cannot run %s: %s\n", argv[3], strerror(err));
  return err == ENOENT ? 127 : 126;
}

}  // namespace loopguard::offload
