#include "proxy/server/request_state.h"

#include <algorithm>

#include "proxy/server/client_connection.h"

namespace loopguard::proxy {

namespace {
constexpr size_t kKeptHeadBytes = 16 * 1024;
}  // namespace

void RequestState::onParseNext() { owner->onPipelined(); }

RequestStatePool::RequestStatePool(ProxyContext& context, size_t max_free)
    : context_(context), max_free_(max_free) {}

RequestStatePool::~RequestStatePool() = default;

RequestState* RequestStatePool::take(ClientConnection& owner, uint64_t max_head_bytes) {
  std::unique_ptr<RequestState> s;
  if (free_.empty()) {
    s = std::make_unique<RequestState>(context_, max_head_bytes);
  } else {
    s = std::move(free_.back());
    free_.pop_back();
    low_free_ = std::min(low_free_, free_.size());
  }
  s->parser.setMaxHeadBytes(max_head_bytes);
  s->parser.reset();
  s->owner = &owner;
  ++in_use_;
  return s.release();
}

void RequestStatePool::release(RequestState* state) {
  state->parse_next.cancel();
  state->owner = nullptr;
  --in_use_;
  releasing_.emplace_back(state);
  recycle_.post(context_.loop);
}

void RequestStatePool::recycle() {
  auto releasing = std::move(releasing_);
  releasing_.clear();
  for (auto& s : releasing) {
    // One large request (a 60 KiB head, a buffered body) must not leave its buffers in the free
    // list for good: such a state is freed, and the next request builds a plain one.
    const http::MessageParser& p = s->parser;
    bool large = s->exchange.holdsLargeBuffers() || p.headers().bytes() > kKeptHeadBytes ||
                 p.target().size() > kKeptHeadBytes || s->answer.capacity() > kKeptHeadBytes;
    if (free_.size() < max_free_ && !large) free_.push_back(std::move(s));
  }
}

size_t RequestStatePool::trim() {
  size_t unused = std::min(low_free_, free_.size());
  if (in_use_ == 0) unused = free_.size();
  // LIFO: the front has waited longest.
  free_.erase(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(unused));
  low_free_ = free_.size();
  if (unused > 0) uv::Loop::of(context_.loop).noteHeapFreed();
  return unused;
}

}  // namespace loopguard::proxy
