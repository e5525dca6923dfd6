// RAII ownership of one libuv handle. With net::Socket (whose stream handle is allocated as the
// type it opens as, and which keeps its close bookkeeping itself: every idle connection holds
// one), the only code in loopguard that calls uv_close.
//
// libuv's contract: a handle's memory may be released only in its close callback, and write or
// connect requests still pending complete (with UV_ECANCELED) before that callback runs. So the
// handle lives on the heap, close() is idempotent, and the memory goes in the close callback.
// An owner that must outlive its pending callbacks (a connection) passes `on_closed` and deletes
// itself there, which gives deferred deletion for free.
#pragma once

#include <uv.h>

#include <utility>

namespace loopguard::uv {

template <class T>
class Handle {
 public:
  using ClosedFn = void (*)(void* ctx);

  Handle() : handle_(new Slot) {}
  ~Handle() { close(); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  T* get() const { return &handle_->raw; }
  uv_handle_t* base() const { return reinterpret_cast<uv_handle_t*>(&handle_->raw); }
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(&handle_->raw); }

  // Call right after a successful uv_xxx_init so close() knows uv_close is needed.
  void markInitialized() { handle_->initialized = true; }
  bool initialized() const { return handle_ && handle_->initialized; }
  bool closed() const { return handle_ == nullptr; }

  // Starts closing; `on_closed(ctx)` runs from the close callback (after every pending request
  // callback of this handle). Safe to call more than once; only the first call counts.
  void close(ClosedFn on_closed = nullptr, void* ctx = nullptr) {
    Slot* slot = std::exchange(handle_, nullptr);
    if (slot == nullptr) return;
    slot->on_closed = on_closed;
    slot->ctx = ctx;
    if (!slot->initialized) {
      // Never registered with the loop: nothing pending can refer to it.
      if (on_closed) on_closed(ctx);
      delete slot;
      return;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&slot->raw), [](uv_handle_t* h) {
      Slot* s = reinterpret_cast<Slot*>(h);  // raw is the first member
      if (s->on_closed) s->on_closed(s->ctx);
      delete s;
    });
  }

 private:
  struct Slot {
    T raw{};  // first member: the uv_handle_t* handed to callbacks converts back to Slot*
    bool initialized = false;
    ClosedFn on_closed = nullptr;
    void* ctx = nullptr;
  };
  Slot* handle_;
};

}  // namespace loopguard::uv
