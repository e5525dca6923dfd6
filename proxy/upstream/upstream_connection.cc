#include "proxy/upstream/upstream_connection.h"

#include <algorithm>
#include <utility>

#include "common/uv/loop.h"

namespace loopguard::upstream {

const char* errorKindName(UpstreamErrorKind kind) {
  switch (kind) {
    case UpstreamErrorKind::Connect: return "connect";
    case UpstreamErrorKind::Reset: return "reset";
    case UpstreamErrorKind::Timeout: return "timeout";
  }
  return "unknown";
}

UpstreamTimeouts::UpstreamTimeouts(uv_loop_t* loop, uint64_t connect_ms, uint64_t idle_ms,
                                   uint64_t keep_parts_ms)
    : connect(loop, connect_ms),
      keep_parts(loop, std::min(keep_parts_ms, idle_ms)),
      idle_rest(loop, idle_ms - std::min(keep_parts_ms, idle_ms)) {}

UpstreamConnection::UpstreamConnection(uv_loop_t* loop, net::BufferPool& pool,
                                       ConnectionOwner& owner, UpstreamTimeouts& timeouts,
                                       std::string peer_name)
    : owner_(owner),
      timeouts_(timeouts),
      peer_name_(std::move(peer_name)),
      stream_(loop, pool, *this) {}

UpstreamConnection::~UpstreamConnection() = default;

int UpstreamConnection::connectTcp(const sockaddr* addr) {
  int rc = stream_.socket().connectTcp(addr);
  if (rc == 0) timeout_.arm(timeouts_.connect);
  return rc;
}

int UpstreamConnection::connectUnix(const std::string& path) {
  int rc = stream_.socket().connectUnix(path);
  if (rc == 0) timeout_.arm(timeouts_.connect);
  return rc;
}

void UpstreamConnection::onStreamConnected(proxy::HttpStream&, int status) {
  if (state_ != State::Connecting) return;  // closed meanwhile: the cancel callback is moot
  timeout_.cancel();
  owner_.onConnectResult(this, status);
}

void UpstreamConnection::becomeIdle() {
  state_ = State::Idle;
  handler_ = nullptr;
  stream_.setHandler(*this);
  // Reading while idle notices the peer closing (or misbehaving) at once.
  stream_.setRaw(true);
  idle_stage_ = IdleStage::KeepsParts;
  timeout_.arm(timeouts_.keep_parts);  // two list operations; attach() cancels it
}

void UpstreamConnection::dropParts() {
  if (!parts_) return;
  stream_.detach();  // idle: nothing in flight
  parts_.reset();
  uv::Loop::of(stream_.loop()).noteHeapFreed();
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
  state_ = State::Active;
  timeout_.cancel();
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

void UpstreamConnection::onTimeout() {
  if (state_ == State::Connecting) {
    // Connect timed out: report it like any other connect failure.
    state_ = State::Closing;
    owner_.onConnectResult(this, UV_ETIMEDOUT);
    close();
    return;
  }
  if (state_ != State::Idle) return;
  if (idle_stage_ == IdleStage::KeepsParts) {
    dropParts();
    idle_stage_ = IdleStage::Bare;
    if (timeouts_.idle_rest.duration() > 0) {
      timeout_.arm(timeouts_.idle_rest);
      return;
    }
  }
  owner_.onIdleClosed(this);
  close();
}

void UpstreamConnection::close() {
  if (stream_.closed()) return;
  state_ = State::Closing;
  handler_ = nullptr;
  timeout_.cancel();
  stream_.close(*this);
}

void UpstreamConnection::fail(UpstreamErrorKind kind, const char* why) {
  if (state_ == State::Active || state_ == State::Tunnel) {
    // The handler releases (and so closes) the connection.
    if (UpstreamStreamHandler* h = handler_) h->onUpstreamFailed(kind, why);
  }
  close();
}

void UpstreamConnection::onStreamClosed(proxy::HttpStream&) {
  owner_.onConnectionGone(this);  // the owner retires it
}

}  // namespace loopguard::upstream
