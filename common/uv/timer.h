// A one-shot/repeating timer owned by one object. The callback is a member function of the
// owner, bound once at construction, so arming it on the hot path allocates nothing.
#pragma once

#include <uv.h>

#include <cstdint>

#include "common/uv/bind.h"
#include "common/uv/handle.h"

namespace loopguard::uv {

class Timer {
 public:
  using Fn = void (*)(void* owner);

  Timer(uv_loop_t* loop, void* owner, Fn fn);
  ~Timer() = default;  // Handle closes the uv_timer_t
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void start(uint64_t timeout_ms, uint64_t repeat_ms = 0);
  void stop();
  bool active() const;
  void unref();  // do not keep the loop alive for this timer alone
  void close() { handle_.close(); }

 private:
  Handle<uv_timer_t> handle_;
  void* owner_;
  Fn fn_;
};

// The timer's older spelling of bindMethod (common/uv/bind.h).
template <class Owner, void (Owner::*Method)()>
void bindTimer(void* owner) {
  bindMethod<Owner, Method>(owner);
}

}  // namespace loopguard::uv
