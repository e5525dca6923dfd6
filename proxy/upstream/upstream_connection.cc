#include "proxy/upstream/upstream_connection.h"

#include <utility>

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
      stream_(loop, pool, *this),
      timer_(loop, this, &uv::bindTimer<UpstreamConnection, &UpstreamConnection::onTimer>) {}

UpstreamConnection::~UpstreamConnection() = default;

int UpstreamConnection::connectTcp(const sockaddr* addr, uint64_t timeout_ms) {
  int rc = stream_.socket().connectTcp(addr);
  if (rc == 0) timer_.start(timeout_ms);
  return rc;
}

int UpstreamConnection::connectUnix(const std::string& path, uint64_t timeout_ms) {
  int rc = stream_.socket().connectUnix(path);
  if (rc == 0) timer_.start(timeout_ms);
  return rc;
}

void UpstreamConnection::onStreamConnected(proxy::HttpStream&, int status) {
  if (state_ != State::Connecting) return;  // closed meanwhile: the cancel callback is moot
  timer_.stop();
  owner_.onConnectResult(this, status);
}

void UpstreamConnection::becomeIdle(uint64_t idle_timeout_ms) {
  state_ = State::Idle;
  handler_ = nullptr;
  stream_.setHandler(*this);
  // Reading while idle notices the peer closing (or misbehaving) at once.
  stream_.setRaw(true);
  // The idle timer is re-armed lazily: a connection reused at once (the common case) costs no
  // timer operation; onTimer() checks how long it has really been idle.
  idle_since_ = uv_now(loop_);
  idle_timeout_ms_ = idle_timeout_ms;
  if (!timer_.active()) timer_.start(idle_timeout_ms);
}

void UpstreamConnection::resetParser(uint64_t max_head_bytes) {
  if (!parts_) {
    parts_ = std::make_unique<proxy::StreamParts>(HTTP_RESPONSE, max_head_bytes);
    stream_.attach(*parts_);
  } else {
    parts_->parser.setMaxHeadBytes(max_head_bytes);
    parts_->parser.reset();
  }
}

void UpstreamConnection::attach(UpstreamStreamHandler& handler, uint64_t max_head_bytes) {
  state_ = State::Active;  // the idle timer may still run: onTimer() ignores an active connection
  handler_ = &handler;
  request_sent_ = false;
  resetParser(max_head_bytes);
  stream_.setRaw(false);  // paused: the exchange resumes it once the request is on its way
  stream_.setHandler(handler);
  stream_.readStart();
}

void UpstreamConnection::detach() {
  handler_ = nullptr;
  stream_.setHandler(*this);
}

void UpstreamConnection::beginTunnel() {
  state_ = State::Tunnel;
  stream_.setRaw(true);
}

void UpstreamConnection::onStreamData(proxy::HttpStream&) {
  // An idle upstream has nothing to say: bytes here mean it is confused. Drop it.
  if (state_ != State::Idle) return;
  owner_.onIdleClosed(this);
  close();
}

void UpstreamConnection::onStreamEof(proxy::HttpStream&, int) {
  switch (state_) {
    case State::Active:
    case State::Tunnel:
      close();  // nobody on it (one would be the stream's handler): nobody needs it any more
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
  if (stream_.closed()) return;
  state_ = State::Closing;
  handler_ = nullptr;
  stream_.setHandler(*this);
  timer_.stop();
  stream_.close(&UpstreamConnection::onClosed, this);
}

void UpstreamConnection::fail(UpstreamErrorKind kind, const char* why) {
  if (state_ == State::Active || state_ == State::Tunnel) {
    // The handler releases (and so closes) the connection.
    if (UpstreamStreamHandler* h = handler_) h->onUpstreamFailed(kind, why);
  }
  close();
}

void UpstreamConnection::onClosed(void* self) {
  auto* c = static_cast<UpstreamConnection*>(self);
  c->owner_.onConnectionGone(c);  // the owner retires it
}

}  // namespace loopguard::upstream
