// One child process that loopguard runs (a worker, or an on_slow diagnostic): spawned with
// uv_spawn in its own process group, its stdout (debug) and stderr (info, rate-limited) logged
// line by line under a tag,
// signalled as a group. The owner hears once, after the exit, when the output is logged too.
#pragma once

#include <uv.h>

#include <string>
#include <vector>

#include "offload/output_lines.h"
#include "offload/policy.h"
#include "common/uv/handle.h"
#include "common/uv/timer.h"

namespace loopguard::offload {

class ChildEvents {
 public:
  virtual ~ChildEvents() = default;
  // The process exited and its output pipes are drained (or gave up on). Called once.
  virtual void onChildExited(const ExitStatus& status) = 0;
};

struct SpawnSpec {
  std::vector<std::string> command;  // program and arguments, placeholders already substituted
  std::vector<std::string> env;      // "NAME=value", the whole environment
  std::string workdir;
};

class ChildProcess {
 public:
  enum class State {
    Idle,      // not spawned (or the spawn failed)
    Running,   // spawned; no exit seen
    Draining,  // exited; logging what is left in its pipes
    Exited,    // onChildExited was called
  };

  // How its output is logged: a worker's stdout at debug and its stderr at info within a
  // LineBudget; a diagnostic's (on_slow: what the operator asked to see) all at info.
  enum class Output { Worker, Diagnostic };

  ChildProcess(uv_loop_t* loop, ChildEvents& events, std::string log_tag,
               Output output = Output::Worker);
  // Must not run any more (Idle or Exited): closing a live child's handle would leave it
  // unreaped and unsupervised (asserted).
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts the process; 0 or a libuv error (then `error` says why and the state stays Idle).
  int spawn(const SpawnSpec& spec, std::string& error);
  // Sends `signum` to the whole process group (the child leads it). No-op unless Running.
  void signalGroup(int signum);
  // True if the child has exited or is exiting, even though libuv has not reported it yet
  // (its sockets report EOF before its exit callback comes). Does not reap.
  bool exitedUnreaped() const;

  State state() const { return state_; }
  int pid() const { return pid_; }
  const std::string& tag() const { return tag_; }
  // The last lines it wrote on stdout and stderr together, oldest first, except those the log
  // already showed (at its current level).
  std::string lastOutput() const;
  bool wroteAnything() const { return any_output_; }

 private:
  struct Stream {
    ChildProcess* self = nullptr;
    uv::Handle<uv_pipe_t> pipe;
    OutputLines lines;
    bool open = false;
    char buffer[4096];
    explicit Stream(OutputLines::Emit emit) : lines(std::move(emit)) {}
  };

  struct RecentLine {
    std::string text;
    bool shown;  // logged at a level the log shows
  };

  void logLine(std::string_view line, bool from_stderr);
  void reportRefused();
  void startReading(Stream& s);
  void onStreamEnd(Stream& s);
  void onExit(int64_t code, int signal);
  void maybeFinish();
  void onLingerTimeout();
  void finish();

  uv_loop_t* loop_;
  ChildEvents& events_;
  std::string tag_;
  uv::Handle<uv_process_t> process_;
  Stream out_;
  Stream err_;
  uv::Timer linger_timer_;  // bounds the wait for pipe EOF after the exit
  std::deque<RecentLine> recent_;
  Output output_;
  LineBudget budget_;  // stderr lines at info
  bool any_output_ = false;
  State state_ = State::Idle;
  int pid_ = 0;
  ExitStatus status_;
};

}  // namespace loopguard::offload
