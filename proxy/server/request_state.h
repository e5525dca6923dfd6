// What a client connection needs only while a request is on it: the request parser (with the
// head it collects) and the Exchange. The context pools them, so an idle keep-alive connection
// holds none of it (about 2.5 KiB saved per idle connection) and a busy one reuses buffers that
// have already grown to size.
#pragma once

#include <uv.h>

#include <memory>
#include <vector>

#include "proxy/session/exchange.h"
#include "proxy/http/message_parser.h"
#include "common/uv/handle.h"
#include "common/uv/loop.h"

namespace loopguard::proxy {

class ClientConnection;

struct RequestState {
  RequestState(ProxyContext& context, http::ParserEvents& events)
      : parser(HTTP_REQUEST, events, 64 * 1024), exchange(context) {}
  http::MessageParser parser;
  Exchange exchange;
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
  RequestStatePool(ProxyContext& context, size_t max_free = 1024);
  ~RequestStatePool();
  RequestStatePool(const RequestStatePool&) = delete;
  RequestStatePool& operator=(const RequestStatePool&) = delete;

  // A state bound to `owner`, its parser reset and ready for a new message.
  RequestState* take(ClientConnection& owner, http::ParserEvents& events, uint64_t max_head_bytes);
  // Given back at the end of this loop iteration, not now: the connection that gives it back
  // is inside a call chain of its own exchange (the exchange's finish() ends in onExchangeDone).
  void release(RequestState* state);

 private:
  void onCheck();

  ProxyContext& context_;
  size_t max_free_;
  std::vector<std::unique_ptr<RequestState>> free_;
  std::vector<RequestState*> releasing_;
  uv::Handle<uv_check_t> check_;
};

}  // namespace loopguard::proxy
