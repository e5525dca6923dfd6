#include "proxy/server/client_connection.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "proxy/http/header_rules.h"

namespace loopguard::proxy {

// ---------------------------------------------------------------------------------------------
// ConnectionSet

void ConnectionSet::retire(uv_loop_t* loop, ClientConnection& c) {
  if (!connections_.contains(c)) return;
  connections_.retire(loop, c);
  if (on_removed) on_removed(on_removed_ctx);
}

// ---------------------------------------------------------------------------------------------
// ClientConnection

ClientConnection::ClientConnection(ClientServices& services)
    : services_(services), stream_(services.context.loop, services.context.buffers, *this) {
  ++services_.context.counters.client_connections;
}

// A retired connection (closed, its close callback run) is destroyed at the end of the loop
// turn, possibly after its server: it has given everything back already, and must not touch
// the services. One destroyed open (its server's set goes first) gives back what it holds.
ClientConnection::~ClientConnection() {
  if (stream_.closed()) return;
  releaseRequestState();
  --services_.context.counters.client_connections;
}

void ClientConnection::takeRequestState() {
  if (stream_.attached()) return;
  RequestState* request = services_.states.take(
      *this, services_.context.snapshot->config().limits.max_header_bytes);
  stream_.attach(*request);
  peer_.format(request->peer_ip);
  request->exchange.bind(stream_, ExchangeClient{&request->peer_ip, this, &ClientConnection::onExchangeDone});
}

void ClientConnection::releaseRequestState() {
  if (!stream_.attached()) return;
  services_.states.release(static_cast<RequestState*>(stream_.detach()));
}

int ClientConnection::accept(uv_stream_t* server) { return stream_.socket().accept(server); }

void ClientConnection::start() {
  peer_ = stream_.socket().peerAddress();
  // A connection that never sends a byte gets the header timeout too, then a silent close.
  armTimeout(static_cast<uint64_t>(services_.context.snapshot->config().timeouts.header.count()));
  stream_.setRaw();  // idle: the first byte of a request is announced, and takes the parser
}

// ---------------------------------------------------------------------------------------------
// Heads

void ClientConnection::onStreamData(HttpStream&) {
  switch (state_) {
    case State::AwaitingHead:
      takeRequestState();
      stream_.setRaw(false);
      beginHead();
      return;
    case State::Lingering:
      stream_.consume(stream_.input().size());
      if (static_cast<int32_t>(static_cast<uint32_t>(uv_now(services_.context.loop)) -
                               linger_until_) >= 0) {
        close();
      } else {
        armTimeout(kLingerQuietMs);  // quiet from now on
      }
      return;
    case State::Exchanging:
    case State::Closing:
      return;
  }
}

void ClientConnection::beginHead() {
  if (!in_head_) {
    // First byte of a new request: from here the whole head must arrive within the timeout.
    in_head_ = true;
    armTimeout(static_cast<uint64_t>(services_.context.snapshot->config().timeouts.header.count()));
  }
  stream_.resume();  // the round ends in onStreamParsed()
}

void ClientConnection::onPipelined() {
  if (state_ == State::AwaitingHead) beginHead();
}

http::ParserAction ClientConnection::onStreamHead(HttpStream&) {
  // With a body, stop here: the Exchange reads the body when the upstream can take it.
  // Without one, llhttp completes the message right away and we stop after it.
  return stream_.parser().hasBody() ? http::ParserAction::Pause : http::ParserAction::Continue;
}

http::ParserAction ClientConnection::onStreamBody(HttpStream&, const char*, size_t) {
  return http::ParserAction::Fail;  // never: the head pauses before a body
}

http::ParserAction ClientConnection::onStreamMessageEnd(HttpStream&) {
  return http::ParserAction::Pause;
}

void ClientConnection::onStreamParsed(HttpStream&, const http::ParseResult& r) {
  if (state_ != State::AwaitingHead) return;
  switch (r.status) {
    case http::ParseStatus::NeedMore:
      return;  // the stream reads on
    case http::ParseStatus::Paused:
    case http::ParseStatus::Upgraded: {
      timeout_.cancel();
      in_head_ = false;
      state_ = State::Exchanging;
      stream_.setHandler(request()->exchange.streamHandler());
      request()->exchange.start(stream_.parser().hasBody());
      return;
    }
    case http::ParseStatus::HeadTooLarge:
      rejectRequest(431, "request head larger than max_header_bytes", true);
      return;
    case http::ParseStatus::Error:
      rejectRequest(r.error_status, r.reason, true);
      return;
  }
}

void ClientConnection::onExchangeDone(AfterExchange after) {
  stream_.setHandler(*this);
  if (state_ == State::Closing) return;
  if (after == AfterExchange::Reset) stream_.socket().resetOnClose();
  if (after == AfterExchange::Close || after == AfterExchange::Reset || services_.context.draining) {
    close();  // a drain does not wait for lingering connections
    return;
  }
  if (after == AfterExchange::Linger) {
    linger();
    return;
  }
  state_ = State::AwaitingHead;
  stream_.parser().resume();
  stream_.parser().reset();
  armTimeout(static_cast<uint64_t>(services_.context.snapshot->config().timeouts.idle.count()));
  in_head_ = false;
  // Pipelined requests already buffered are parsed from the loop's ready queue: the exchange
  // that just ended is still on the stack (its finish() called this), and the next request must
  // not start underneath it.
  if (!stream_.input().empty()) {
    request()->parse_next.post(services_.context.loop);
  } else {
    releaseRequestState();  // idle: the parser and exchange go back to the pool
    stream_.setRaw();
  }
}

// ---------------------------------------------------------------------------------------------
// Refusals, lingering, timeouts, close

void ClientConnection::rejectRequest(int status, const char* message, bool linger) {
  services_.context.log->debug("client {}: rejecting request: {} {}", request()->peer_ip, status, message);
  stream_.pause();
  stream_.consume(stream_.input().size());
  timeout_.cancel();
  in_head_ = false;
  std::string request_id;
  services_.context.ids.next(request_id);
  http::ErrorResponse e;
  e.status = status;
  e.error = message;
  e.request_id = request_id;
  e.keep_alive = false;
  e.client_minor = 1;
  std::string& out = request()->answer;
  out.clear();
  http::writeErrorResponse(out, e);
  ++services_.context.unrouted.requests_by_code[status];
  if (services_.context.access_log.enabled()) {
    // The same shape as an exchange's line; what the broken head never said stays absent.
    AccessRecord r;
    r.request_id = request_id;
    r.client = request()->peer_ip;
    r.status = status;
    r.bytes = out.size();
    r.error = message;
    services_.context.access_log.write(r);
  }
  stream_.out().addOwned(out);
  stream_.flush();  // completes in onStreamWritten
  if (linger) {
    this->linger();  // the shutdown follows the write
  } else {
    state_ = State::Closing;
    close_after_write_ = true;
  }
}

void ClientConnection::linger() {
  state_ = State::Lingering;
  // A refusal's answer may still be going out: its parts stay until that write completes.
  if (!stream_.writing()) releaseRequestState();
  stream_.consume(stream_.input().size());
  // After the answer (the shutdown waits for pending writes): the client reads it, then EOF.
  if (stream_.shutdown() != 0) {
    close();
    return;
  }
  linger_until_ = static_cast<uint32_t>(uv_now(services_.context.loop) + kLingerMaxMs);
  armTimeout(kLingerQuietMs);
  stream_.socket().setReadLimit(net::BufferPool::kLargeBlock);  // dropped as soon as read
  stream_.setRaw();
}

void ClientConnection::onStreamWritten(HttpStream&, int status) {
  if (close_after_write_ || status < 0) {
    close();
    return;
  }
  if (state_ == State::Lingering) releaseRequestState();
}

void ClientConnection::onStreamEof(HttpStream&, int /*status*/) {
  if (state_ == State::AwaitingHead || state_ == State::Lingering) close();
}

void ClientConnection::onTimeout() {
  if (state_ == State::Lingering) {
    close();  // quiet for kLingerQuietMs (each read re-arms it)
    return;
  }
  if (state_ != State::AwaitingHead) return;
  if (in_head_) {
    rejectRequest(408, "request head not received within timeouts.header", false);
  } else {
    close();  // idle keep-alive connection, or one that never sent anything
  }
}

void ClientConnection::closeIfIdle() {
  // A lingering connection has had its answer: a drain does not wait for it.
  if (state_ == State::Lingering || (state_ == State::AwaitingHead && !in_head_)) close();
}

void ClientConnection::close() {
  if (state_ == State::Closing && stream_.closed()) return;
  if (state_ == State::Exchanging && request()->exchange.active()) {
    request()->exchange.onClientGone();  // ends in onExchangeDone(Close) -> close()
    return;
  }
  state_ = State::Closing;
  timeout_.cancel();
  if (!stream_.closed()) stream_.close(*this);
  releaseRequestState();  // after the close: a write in flight is cancelled with it
}

void ClientConnection::onStreamClosed(HttpStream&) {
  --services_.context.counters.client_connections;
  services_.set.retire(services_.context.loop, *this);
}

}  // namespace loopguard::proxy
