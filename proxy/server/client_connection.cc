#include "proxy/server/client_connection.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "proxy/http/header_rules.h"

namespace loopguard::proxy {

// ---------------------------------------------------------------------------------------------
// ConnectionSet

void ConnectionSet::add(ClientConnection* c) {
  c->set_prev = nullptr;
  c->set_next = head_;
  if (head_) head_->set_prev = c;
  head_ = c;
  ++size_;
}

void ConnectionSet::remove(ClientConnection* c) {
  if (c->set_prev) c->set_prev->set_next = c->set_next;
  if (c->set_next) c->set_next->set_prev = c->set_prev;
  if (head_ == c) head_ = c->set_next;
  c->set_prev = c->set_next = nullptr;
  --size_;
  if (on_removed) on_removed(on_removed_ctx);
}

// ---------------------------------------------------------------------------------------------
// ClientConnection

ClientConnection::ClientConnection(ClientServices& services)
    : services_(services), socket_(services.context.loop, services.context.buffers, *this) {
  services_.set.add(this);
  ++services_.context.counters.client_connections;
}

ClientConnection::~ClientConnection() { --services_.context.counters.client_connections; }

void ClientConnection::takeRequestState() {
  if (request_ != nullptr) return;
  request_ = services_.states.take(*this, *this, services_.context.snapshot->config().limits.max_header_bytes);
}

void ClientConnection::releaseRequestState() {
  if (request_ == nullptr) return;
  services_.states.release(std::exchange(request_, nullptr));
}

int ClientConnection::accept(uv_stream_t* server) { return socket_.accept(server); }

void ClientConnection::start() {
  peer_ip_ = socket_.peerIp();
  // A connection that never sends a byte gets the header timeout too, then a silent close.
  armTimeout(static_cast<uint64_t>(services_.context.snapshot->config().timeouts.header.count()));
  socket_.readStart();
}

void ClientConnection::onSocketRead() {
  switch (state_) {
    case State::AwaitingHead:
      parseHeads();
      return;
    case State::Exchanging:
      request_->exchange.onClientInput();
      return;
    case State::Lingering:
      socket_.consume(socket_.input().size());
      if (uv_now(services_.context.loop) >= linger_until_) {
        close();
      } else {
        armTimeout(kLingerQuietMs);  // quiet from now on
      }
      return;
    case State::Closing:
      return;
  }
}

void ClientConnection::parseHeads() {
  if (in_parse_loop_) return;
  in_parse_loop_ = true;
  parseHeadsLoop();
  in_parse_loop_ = false;
}

void ClientConnection::parseHeadsLoop() {
  while (state_ == State::AwaitingHead) {
    std::string_view input = socket_.input();
    if (input.empty()) {
      socket_.readStart();
      return;
    }
    takeRequestState();
    http::MessageParser& parser = request_->parser;
    if (!parser.inMessage() && !head_timer_armed_) {
      // First byte of a new request: from here the whole head must arrive within the timeout.
      head_timer_armed_ = true;
      armTimeout(static_cast<uint64_t>(services_.context.snapshot->config().timeouts.header.count()));
    }
    http::ParseResult r = parser.execute(input.data(), input.size());
    switch (r.status) {
      case http::ParseStatus::NeedMore:
        noteHeadBytes(input.substr(0, r.consumed));
        socket_.consume(r.consumed);
        continue;
      case http::ParseStatus::Paused:
      case http::ParseStatus::Upgraded: {
        noteHeadBytes(input.substr(0, r.consumed));
        if (std::string_view(head_tail_, 4) != "\r\n\r\n") {
          rejectRequest(400, "request head does not end with CRLF CRLF", true);
          return;
        }
        socket_.consume(r.consumed);
        timeout_.cancel();
        head_timer_armed_ = false;
        state_ = State::Exchanging;
        bool has_body =
            parser.chunked() || (parser.hasContentLength() && parser.contentLength() > 0);
        request_->exchange.start(has_body);
        continue;  // the exchange may already be done (loop only if it left us AwaitingHead)
      }
      case http::ParseStatus::HeadTooLarge:
        rejectRequest(431, "request head larger than max_header_bytes", true);
        return;
      case http::ParseStatus::Error:
        rejectRequest(r.error_status, r.reason, true);
        return;
    }
  }
}

void ClientConnection::noteHeadBytes(std::string_view bytes) {
  if (bytes.size() >= 4) {
    bytes.remove_prefix(bytes.size() - 4);
    bytes.copy(head_tail_, 4);
    return;
  }
  std::memmove(head_tail_, head_tail_ + bytes.size(), 4 - bytes.size());
  bytes.copy(head_tail_ + 4 - bytes.size(), bytes.size());
}

int ClientConnection::onHeadComplete() {
  const http::MessageParser& p = request_->parser;
  bool has_body = p.chunked() || (p.hasContentLength() && p.contentLength() > 0);
  // With a body, stop here: the Exchange reads the body when the upstream can take it.
  // Without one, llhttp completes the message right away and we stop after it.
  return has_body ? http::kPauseParser : 0;
}

void ClientConnection::onBodyData(const char* at, size_t len) {
  request_->exchange.onRequestBody(at, len);
}

int ClientConnection::onMessageComplete() {
  if (state_ == State::Exchanging) request_->exchange.onRequestComplete();
  return http::kPauseParser;
}

void ClientConnection::onExchangeDone(AfterExchange after) {
  if (state_ == State::Closing) return;
  if (after == AfterExchange::Reset) socket_.resetOnClose();
  if (after == AfterExchange::Close || after == AfterExchange::Reset || services_.context.draining) {
    close();  // a drain does not wait for lingering connections
    return;
  }
  if (after == AfterExchange::Linger) {
    linger();
    return;
  }
  state_ = State::AwaitingHead;
  request_->parser.resume();
  request_->parser.reset();
  armTimeout(static_cast<uint64_t>(services_.context.snapshot->config().timeouts.idle.count()));
  head_timer_armed_ = false;
  // Pipelined requests already buffered are parsed by the running parseHeads() loop if we are
  // inside it; otherwise from the loop's ready queue: the exchange that just ended is still on
  // the stack (its finish() called this), and the next request must not start underneath it.
  if (!socket_.input().empty()) {
    if (!in_parse_loop_) request_->parse_next.post(services_.context.loop);
  } else {
    releaseRequestState();  // idle: the parser and exchange go back to the pool
    socket_.readStart();
  }
}

void ClientConnection::rejectRequest(int status, const char* message, bool linger) {
  services_.context.log->debug("client {}: rejecting request: {} {}", peer_ip_, status, message);
  socket_.readStop();
  socket_.consume(socket_.input().size());
  timeout_.cancel();
  std::string request_id;
  services_.context.ids.next(request_id);
  http::ErrorResponse e;
  e.status = status;
  e.error = message;
  e.request_id = request_id;
  e.keep_alive = false;
  e.client_minor = 1;
  if (!out_) out_ = std::make_unique<std::string>();
  std::string& out = *out_;
  out.clear();
  http::writeErrorResponse(out, e);
  ++services_.context.unrouted.requests_by_code[status];
  if (services_.context.access_log.enabled()) {
    // The same shape as an exchange's line; what the broken head never said stays absent.
    AccessRecord r;
    r.request_id = request_id;
    r.client = peer_ip_;
    r.status = status;
    r.bytes = out.size();
    r.error = message;
    services_.context.access_log.write(r);
  }
  uv_buf_t buf = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
  if (socket_.write(&buf, 1) != 0) {
    close();
    return;
  }
  if (linger) {
    this->linger();  // the shutdown follows the write
  } else {
    state_ = State::Closing;
    close_after_write_ = true;
  }
}

void ClientConnection::linger() {
  state_ = State::Lingering;
  releaseRequestState();
  socket_.consume(socket_.input().size());
  // After the answer (the shutdown waits for pending writes): the client reads it, then EOF.
  if (socket_.shutdown() != 0) {
    close();
    return;
  }
  linger_until_ = uv_now(services_.context.loop) + kLingerMaxMs;
  armTimeout(kLingerQuietMs);
  socket_.setReadLimit(net::BufferPool::kLargeBlock);  // dropped as soon as read
  socket_.readStart();
}

void ClientConnection::onSocketEof(int /*status*/) {
  if (state_ == State::Exchanging) {
    request_->exchange.onClientGone();
    return;
  }
  if (state_ == State::AwaitingHead || state_ == State::Lingering) close();
}

void ClientConnection::onSocketWritten(int status) {
  if (state_ == State::Exchanging) {
    request_->exchange.onClientWritten(status);
    return;
  }
  if (close_after_write_ || (state_ == State::Lingering && status < 0)) close();
}

void ClientConnection::onPipelined() {
  if (state_ == State::AwaitingHead) parseHeads();
}

void ClientConnection::onTimeout() {
  if (state_ == State::Lingering) {
    close();  // quiet for kLingerQuietMs (each read re-arms it)
    return;
  }
  if (state_ != State::AwaitingHead) return;
  if (inMessage() || head_timer_armed_) {
    rejectRequest(408, "request head not received within timeouts.header", false);
  } else {
    close();  // idle keep-alive connection, or one that never sent anything
  }
}

void ClientConnection::closeIfIdle() {
  // A lingering connection has had its answer: a drain does not wait for it.
  if (state_ == State::Lingering ||
      (state_ == State::AwaitingHead && !inMessage() && !head_timer_armed_)) {
    close();
  }
}

void ClientConnection::close() {
  if (state_ == State::Closing && socket_.closed()) return;
  if (state_ == State::Exchanging && request_->exchange.active()) {
    request_->exchange.onClientGone();  // ends in onExchangeDone(false) -> close()
    return;
  }
  state_ = State::Closing;
  timeout_.cancel();
  releaseRequestState();
  if (!socket_.closed()) socket_.close(&ClientConnection::onClosed, this);
}

void ClientConnection::onClosed(void* self) {
  auto* c = static_cast<ClientConnection*>(self);
  c->services_.set.remove(c);
  delete c;
}

}  // namespace loopguard::proxy
