// Process signals on the loop: SIGTERM/SIGINT start a graceful drain capped by
// `timeouts.drain`; a second one stops at once; SIGHUP asks for a reload.
#pragma once

#include <uv.h>

#include <functional>

#include "config/config.h"
#include "common/uv/handle.h"
#include "common/uv/timer.h"

namespace loopguard {

class Lifecycle {
 public:
  Lifecycle(uv_loop_t* loop, config::Duration drain_budget);
  ~Lifecycle();

  std::function<void(std::function<void()> done)> onDrain;
  std::function<void()> onForceStop;
  std::function<void()> onReload;

  void start();
  int exitCode() const { return exit_code_; }
  // Ends the process's handles: signals and timers closed so the loop can finish.
  void stop();

 private:
  void onSignal(int signum);
  void onDrainTimeout();

  uv_loop_t* loop_;
  config::Duration drain_budget_;
  uv::Handle<uv_signal_t> sigterm_;
  uv::Handle<uv_signal_t> sigint_;
  uv::Handle<uv_signal_t> sighup_;
  uv::Timer drain_timer_;
  bool draining_ = false;
  int exit_code_ = 0;
};

}  // namespace loopguard
