#include "proxy/upstream/upstream_connection.h"

namespace loopguard::upstream {

const char* errorKindName(UpstreamErrorKind kind) {
  switch (kind) {
    case UpstreamErrorKind::Connect: return "connect";
    case UpstreamErrorKind::Reset: return "reset";
    case UpstreamErrorKind::Timeout: return "timeout";
  }
  return "unknown";
}

UpstreamConnection::UpstreamConnection(uv_loop_t* loop, net::BufferPool& pool,
                                       ConnectionOwner& owner, std::string peer_name)
    : loop_(loop),
      owner_(owner),
      peer_name_(std::move(peer_name)),
      socket_(loop, pool, *this),
      timer_(loop, this, &uv::bindTimer<UpstreamConnection, &UpstreamConnection::onTimer>) {}

UpstreamConnection::~UpstreamConnection() = default;

int UpstreamConnection::connectTcp(const sockaddr* addr, uint64_t timeout_ms) {
  int rc = socket_.connectTcp(addr);
  if (rc == 0) timer_.start(timeout_ms);
  return rc;
}

int UpstreamConnection::connectUnix(const std::string& path, uint64_t timeout_ms) {
  int rc = socket_.connectUnix(path);
  if (rc == 0) timer_.start(timeout_ms);
  return rc;
}

void UpstreamConnection::onSocketConnected(int status) {
  if (state_ != State::Connecting) return;  // closed meanwhile: the cancel callback is moot
  timer_.stop();
  owner_.onConnectResult(this, status);
}

void UpstreamConnection::becomeIdle(uint64_t idle_timeout_ms) {
  state_ = State::Idle;
  handler_ = nullptr;
  // Reading while idle notices the peer closing (or misbehaving) at once.
  socket_.readStart();
  // The idle timer is re-armed lazily: a connection reused at once (the common case) costs no
  // timer operation; onTimer() checks how long it has really been idle.
  idle_since_ = uv_now(loop_);
  idle_timeout_ms_ = idle_timeout_ms;
  if (!timer_.active()) timer_.start(idle_timeout_ms);
}

void UpstreamConnection::attach(UpstreamHandler* handler, http::ParserEvents* events,
                                uint64_t max_head_bytes) {
  state_ = State::Active;  // the idle timer may still run: onTimer() ignores an active connection
  handler_ = handler;
  request_sent_ = false;
  if (!parser_) {
    parser_ = std::make_unique<http::MessageParser>(HTTP_RESPONSE, *events, max_head_bytes);
  } else {
    parser_->setEvents(*events);
    parser_->setMaxHeadBytes(max_head_bytes);
    parser_->reset();
  }
  socket_.readStart();
}

void UpstreamConnection::detach() { handler_ = nullptr; }

void UpstreamConnection::onSocketRead() {
  switch (state_) {
    case State::Active:
    case State::Tunnel:
      if (handler_) handler_->onUpstreamInput();
      return;
    case State::Idle:
      // An idle upstream has nothing to say; bytes here mean it is confused: drop it.
      owner_.onIdleClosed(this);
      close();
      return;
    case State::Connecting:
    case State::Closing:
      return;
  }
}

void UpstreamConnection::onSocketEof(int status) {
  peer_closed_ = true;
  switch (state_) {
    case State::Active:
    case State::Tunnel:
      if (handler_) {
        handler_->onUpstreamClosed(status);
      } else {
        close();
      }
      return;
    case State::Idle:
      owner_.onIdleClosed(this);
      close();
      return;
    case State::Connecting:
    case State::Closing:
      return;
  }
}

void UpstreamConnection::onSocketWritten(int status) {
  if (handler_ && (state_ == State::Active || state_ == State::Tunnel)) {
    handler_->onUpstreamWritten(status);
  }
}

void UpstreamConnection::onTimer() {
  if (state_ == State::Connecting) {
    // Connect timed out: report it like any other connect failure.
    state_ = State::Closing;
    owner_.onConnectResult(this, UV_ETIMEDOUT);
    close();
  } else if (state_ == State::Idle) {
    uint64_t idle_for = uv_now(loop_) - idle_since_;
    if (idle_for < idle_timeout_ms_) {
      timer_.start(idle_timeout_ms_ - idle_for);  // it was busy in between
      return;
    }
    owner_.onIdleClosed(this);
    close();
  }
}

void UpstreamConnection::close() {
  if (socket_.closed()) return;
  state_ = State::Closing;
  handler_ = nullptr;
  timer_.stop();
  socket_.close(&UpstreamConnection::onClosed, this);
}

void UpstreamConnection::fail(UpstreamErrorKind kind, const char* why) {
  UpstreamHandler* h = handler_;
  if (h != nullptr && (state_ == State::Active || state_ == State::Tunnel)) {
    h->onUpstreamFailed(kind, why);  // the handler releases (and so closes) the connection
  }
  close();
}

void UpstreamConnection::onClosed(void* self) {
  auto* c = static_cast<UpstreamConnection*>(self);
  c->owner_.onConnectionGone(c);
  delete c;
}

}  // namespace loopguard::upstream
