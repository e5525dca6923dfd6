#include "common/uv/timer.h"

namespace loopguard::uv {

Timer::Timer(uv_loop_t* loop, void* owner, Fn fn) : owner_(owner), fn_(fn) {
  uv_timer_init(loop, handle_.get());
  handle_.markInitialized();
  handle_.get()->data = this;
}

void Timer::start(uint64_t timeout_ms, uint64_t repeat_ms) {
  if (handle_.closed()) return;
  uv_timer_start(
      handle_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Timer*>(t->data);
        self->fn_(self->owner_);
      },
      timeout_ms, repeat_ms);
}

void Timer::stop() {
  if (!handle_.closed()) uv_timer_stop(handle_.get());
}

bool Timer::active() const {
  return !handle_.closed() && uv_is_active(handle_.base()) != 0;
}

void Timer::unref() {
  if (!handle_.closed()) uv_unref(handle_.base());
}

}  // namespace loopguard::uv
