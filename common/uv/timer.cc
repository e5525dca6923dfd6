#include "common/uv/timer.h"

namespace loopguard::uv {

void Timer::start(uint64_t timeout_ms, uint64_t repeat_ms) {
  if (closed_) return;
  if (!handle_) {
    handle_.emplace();
    uv_timer_init(loop_, handle_->get());
    handle_->markInitialized();
    handle_->get()->data = this;
    if (unref_) uv_unref(handle_->base());
  }
  uv_timer_start(
      handle_->get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Timer*>(t->data);
        self->fn_(self->owner_);
      },
      timeout_ms, repeat_ms);
}

void Timer::stop() {
  if (handle_ && !handle_->closed()) uv_timer_stop(handle_->get());
}

bool Timer::active() const {
  return handle_ && !handle_->closed() && uv_is_active(handle_->base()) != 0;
}

void Timer::unref() {
  unref_ = true;
  if (handle_ && !handle_->closed()) uv_unref(handle_->base());
}

void Timer::close() {
  closed_ = true;
  if (handle_) handle_->close();
}

}  // namespace loopguard::uv
