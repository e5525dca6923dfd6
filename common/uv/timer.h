// A one-shot/repeating timer owned by one object. The callback is a member function of the
// owner, bound once at construction, so arming it on the hot path allocates nothing.
//
// The uv_timer_t is made on the first start(), not at construction: an object that carries
// several timers for waits that rarely happen (a pooled exchange's body and send timeouts)
// holds a handle only for the ones it has used.
#pragma once

#include <uv.h>

#include <cstdint>
#include <optional>

#include "common/uv/bind.h"
#include "common/uv/handle.h"

namespace loopguard::uv {

class Timer {
 public:
  using Fn = void (*)(void* owner);

  Timer(uv_loop_t* loop, void* owner, Fn fn) : loop_(loop), owner_(owner), fn_(fn) {}
  ~Timer() = default;  // Handle closes the uv_timer_t
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void start(uint64_t timeout_ms, uint64_t repeat_ms = 0);
  void stop();
  bool active() const;
  void unref();  // do not keep the loop alive for this timer alone
  // After close() the timer never runs again (start() does nothing).
  void close();

 private:
  uv_loop_t* loop_;
  std::optional<Handle<uv_timer_t>> handle_;  // from the first start() on
  void* owner_;
  Fn fn_;
  bool closed_ = false;
  bool unref_ = false;
};

// The timer's older spelling of bindMethod (common/uv/bind.h).
template <class Owner, void (Owner::*Method)()>
void bindTimer(void* owner) {
  bindMethod<Owner, Method>(owner);
}

}  // namespace loopguard::uv
