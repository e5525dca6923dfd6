#include "common/uv/loop.h"

namespace loopguard::uv {

void ReadyCall::post(uv_loop_t* loop) {
  if (!posted()) Loop::of(loop).post(*this);
}

Loop::Loop() {
  uv_loop_init(&loop_);
  loop_.data = this;
  uv_check_init(&loop_, check_.get());
  check_.markInitialized();
  check_.get()->data = this;
  uv_idle_init(&loop_, idle_.get());
  idle_.markInitialized();
}

Loop::~Loop() {
  if (!closed_) close();
}

void Loop::post(ReadyCall& call) {
  ready_.pushBack(call);
  arm();
}

void Loop::arm() {
  if (armed_ || check_.closed()) return;
  armed_ = true;
  uv_check_start(check_.get(), [](uv_check_t* h) { static_cast<Loop*>(h->data)->drain(); });
  uv_idle_start(idle_.get(), [](uv_idle_t*) {});
}

void Loop::drain() {
  // Calls posted meanwhile run in this same pass, and so do the deletions they lead to: the
  // destructor of a doomed object may post or defer again.
  for (;;) {
    while (ReadyCall* call = ready_.popFront()) call->fn_(call->owner_);
    if (doomed_.empty()) break;
    std::vector<Doomed> doomed = std::move(doomed_);
    doomed_.clear();
    doomed.clear();
  }
  armed_ = false;
  if (check_.closed()) return;  // close() is draining by hand
  uv_check_stop(check_.get());
  uv_idle_stop(idle_.get());
}

int Loop::close() {
  if (closed_) return close_rc_;
  closed_ = true;
  uv_run(&loop_, UV_RUN_DEFAULT);
  check_.close();
  idle_.close();
  // Close callbacks may still post or defer: run the loop and the queue until neither has work.
  do {
    uv_run(&loop_, UV_RUN_DEFAULT);
    drain();
  } while (uv_loop_alive(&loop_) != 0);
  close_rc_ = uv_loop_close(&loop_);
  return close_rc_;
}

Slab& Loop::slab(size_t block_bytes) {
  size_t rounded = Slab::roundedBlockBytes(block_bytes);
  for (auto& s : slabs_) {
    if (s->blockBytes() == rounded) return *s;
  }
  return *slabs_.emplace_back(std::make_unique<Slab>(block_bytes));
}

}  // namespace loopguard::uv
