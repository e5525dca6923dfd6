#include "main/lifecycle.h"

#include <spdlog/spdlog.h>

namespace loopguard {

Lifecycle::Lifecycle(uv_loop_t* loop, config::Duration drain_budget)
    : loop_(loop),
      drain_budget_(drain_budget),
      drain_timer_(loop, this, &uv::bindTimer<Lifecycle, &Lifecycle::onDrainTimeout>) {}

Lifecycle::~Lifecycle() { stop(); }

void Lifecycle::start() {
  auto arm = [this](uv::Handle<uv_signal_t>& h, int signum) {
    uv_signal_init(loop_, h.get());
    h.markInitialized();
    h.get()->data = this;
    uv_signal_start(
        h.get(), [](uv_signal_t* s, int n) { static_cast<Lifecycle*>(s->data)->onSignal(n); },
        signum);
  };
  arm(sigterm_, SIGTERM);
  arm(sigint_, SIGINT);
  arm(sighup_, SIGHUP);
  uv_unref(sighup_.base());  // a reload handler alone must not keep the process alive
}

void Lifecycle::onSignal(int signum) {
  auto log = spdlog::get("main");
  if (signum == SIGHUP) {
    log->info("SIGHUP: reloading the config");
    if (onReload) onReload();
    return;
  }
  if (draining_) {
    log->warn("second {}: stopping now", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    exit_code_ = 0;
    if (onForceStop) onForceStop();
    stop();
    return;
  }
  draining_ = true;
  log->info("{}: draining (up to {} ms)", signum == SIGTERM ? "SIGTERM" : "SIGINT",
            drain_budget_.count());
  drain_timer_.start(static_cast<uint64_t>(drain_budget_.count()));
  if (onDrain) {
    onDrain([this] {
      spdlog::get("main")->info("drained");
      stop();
    });
  }
}

void Lifecycle::onDrainTimeout() {
  spdlog::get("main")->warn("drain budget exhausted: closing what is left");
  if (onForceStop) onForceStop();
  stop();
}

void Lifecycle::stop() {
  drain_timer_.stop();
  drain_timer_.close();
  sigterm_.close();
  sigint_.close();
  sighup_.close();
}

}  // namespace loopguard
