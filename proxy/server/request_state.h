// What a client connection needs only while a request is on it: its stream's parts (the request
// parser, with the head it collects, and the output batch) and the Exchange. The context pools
// them, so an idle keep-alive connection holds none of it (about 2.5 KiB saved per idle
// connection) and a busy one reuses buffers that have already grown to size.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "common/uv/loop.h"
#include "proxy/session/exchange.h"
#include "proxy/stream/http_stream.h"

namespace loopguard::proxy {

class ClientConnection;

// The stream's parts are its base: while a request is on a connection they are attached to its
// stream, and that is how the connection finds its request state (one pointer, not two).
struct RequestState : StreamParts {
  RequestState(ProxyContext& context, uint64_t max_head_bytes)
      : StreamParts(HTTP_REQUEST, max_head_bytes), exchange(context) {}
  Exchange exchange;
  // An answer the connection makes itself (a malformed head, the header timeout): written from
  // here, so it lives as long as the write that carries it.
  std::string answer;
  std::string peer_ip;  // the connection's PeerAddress as text, for this request
  // Pipelined input already buffered when an exchange ends is parsed from the loop, not under
  // the frames of the exchange that just ended. Lives here: only a connection with a request
  // state has input to parse.
  ClientConnection* owner = nullptr;
  uv::ReadyCall parse_next{this, &uv::bindMethod<RequestState, &RequestState::onParseNext>};

 private:
  void onParseNext();
};

class RequestStatePool {
 public:
  explicit RequestStatePool(ProxyContext& context, size_t max_free = 1024);
  ~RequestStatePool();
  RequestStatePool(const RequestStatePool&) = delete;
  RequestStatePool& operator=(const RequestStatePool&) = delete;

  // A state for `owner`, its parser reset and ready for a new message.
  RequestState* take(ClientConnection& owner, uint64_t max_head_bytes);
  // Given back from the loop's ready queue, not now: the connection that gives it back is
  // inside a call chain of its own exchange (the exchange's finish() ends in onExchangeDone).
  void release(RequestState* state);
  // Frees the states that stayed in the free list through the whole period since the last
  // trim, and all of them when no request is in progress (a burst is over: the next request
  // makes a new one, at most one allocation a second for a trickle); returns how many, and
  // notes on the loop that heap memory came back (uv::Loop::noteHeapFreed).
  size_t trim();

 private:
  void recycle();

  ProxyContext& context_;
  size_t max_free_;
  std::vector<std::unique_ptr<RequestState>> free_;
  std::vector<std::unique_ptr<RequestState>> releasing_;
  size_t low_free_ = 0;  // the fewest free states since the last trim
  size_t in_use_ = 0;    // taken and not yet released
  uv::ReadyCall recycle_{this, &uv::bindMethod<RequestStatePool, &RequestStatePool::recycle>};
};

}  // namespace loopguard::proxy
