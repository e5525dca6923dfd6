#include "proxy/server/request_state.h"

#include "proxy/server/client_connection.h"

namespace loopguard::proxy {

namespace {
constexpr size_t kKeptHeadBytes = 16 * 1024;
}  // namespace

void RequestState::onParseNext() { owner->onPipelined(); }

RequestStatePool::RequestStatePool(ProxyContext& context, size_t max_free)
    : context_(context), max_free_(max_free) {
  uv_check_init(context.loop, check_.get());
  check_.markInitialized();
  check_.get()->data = this;
}

RequestStatePool::~RequestStatePool() {
  for (RequestState* s : releasing_) delete s;
}

RequestState* RequestStatePool::take(ClientConnection& owner, http::ParserEvents& events,
                                     uint64_t max_head_bytes) {
  RequestState* s;
  if (free_.empty()) {
    s = new RequestState(context_, events);
  } else {
    s = free_.back().release();
    free_.pop_back();
  }
  s->parser.setEvents(events);
  s->parser.setMaxHeadBytes(max_head_bytes);
  s->parser.reset();
  s->exchange.bind(owner);
  s->owner = &owner;
  return s;
}

void RequestStatePool::release(RequestState* state) {
  state->parser.setEvents(http::detachedParserEvents());
  state->parse_next.cancel();
  state->owner = nullptr;
  if (releasing_.empty()) {
    uv_check_start(check_.get(), [](uv_check_t* h) {
      static_cast<RequestStatePool*>(h->data)->onCheck();
    });
  }
  releasing_.push_back(state);
}

void RequestStatePool::onCheck() {
  uv_check_stop(check_.get());
  auto releasing = std::move(releasing_);
  releasing_.clear();
  for (RequestState* s : releasing) {
    // One large request (a 60 KiB head, a buffered body) must not leave its buffers in the free
    // list for good: such a state is freed, and the next request builds a plain one.
    bool large = s->exchange.holdsLargeBuffers() ||
                 s->parser.headers().bytes() > kKeptHeadBytes ||
                 s->parser.target().size() > kKeptHeadBytes;
    if (free_.size() < max_free_ && !large) {
      free_.emplace_back(s);
    } else {
      delete s;
    }
  }
}

}  // namespace loopguard::proxy
