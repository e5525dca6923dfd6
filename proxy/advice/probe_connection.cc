#include "proxy/advice/probe_connection.h"

#include <sys/un.h>

namespace loopguard::advice {

namespace {
constexpr uint64_t kMaxProbeHeadBytes = 64 * 1024;
}

ProbeConnection::ProbeConnection(uv_loop_t* loop, net::BufferPool& buffers, ProbeOwner& owner)
    : owner_(owner),
      socket_(loop, buffers, *this),
      parser_(HTTP_RESPONSE, *this, kMaxProbeHeadBytes) {}

int ProbeConnection::connect(const SocketPeer& to) {
  if (to.kind == SocketPeer::Kind::Unix) {
    return socket_.connectUnix(to.peer_name.substr(5));  // after "unix:"
  }
  return socket_.connectTcp(reinterpret_cast<const sockaddr*>(&to.peer));
}

int ProbeConnection::fd() const {
  uv_os_fd_t fd = -1;
  if (socket_.closed() || uv_fileno(reinterpret_cast<uv_handle_t*>(socket_.stream()), &fd) != 0) {
    return -1;
  }
  return fd;
}

void ProbeConnection::onSocketConnected(int status) {
  if (state_ != State::Connecting) return;
  if (status != 0) {
    gone();
    return;
  }
  state_ = State::Idle;
  connected_ = true;
  socket_.readStart();  // an idle keep-alive peer that closes is noticed at once
  owner_.onProbeConnected(*this);
}

bool ProbeConnection::send(const std::string& request) {
  if (state_ != State::Idle || socket_.writing()) return false;
  out_ = request;
  parser_.reset();
  message_done_ = false;
  uv_buf_t buf = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
  state_ = State::WaitingHead;
  switch (socket_.writeNow(&buf, 1)) {
    case net::Socket::WriteStatus::Done:
    case net::Socket::WriteStatus::Pending:
    case net::Socket::WriteStatus::Copied:
      return true;
    case net::Socket::WriteStatus::Error:
      break;
  }
  gone();
  return false;
}

void ProbeConnection::onSocketWritten(int status) {
  if (status < 0 && state_ != State::Closing) gone();
}

void ProbeConnection::onSocketRead() {
  if (state_ == State::Closing) return;
  std::string_view in = socket_.input();
  if (state_ == State::Idle || state_ == State::Connecting) {
    socket_.consume(in.size());
    gone();  // nothing was asked: a confused peer
    return;
  }
  http::ParseResult r = parser_.execute(in.data(), in.size());
  socket_.consume(in.size());
  if (state_ == State::Closing) return;  // the owner closed it from onProbeHead
  if (r.status == http::ParseStatus::Error || r.status == http::ParseStatus::HeadTooLarge ||
      r.status == http::ParseStatus::Upgraded) {
    gone();
    return;
  }
  if (message_done_) {
    if (!keep_alive_) {
      gone();
      return;
    }
    state_ = State::Idle;
  }
}

int ProbeConnection::onHeadComplete() {
  if (parser_.statusCode() >= 100 && parser_.statusCode() < 200) return 0;
  keep_alive_ = parser_.keepAlive();
  if (state_ == State::WaitingHead) {
    state_ = State::ReadingBody;
    owner_.onProbeHead(*this);
  }
  return 0;
}

int ProbeConnection::onMessageComplete() {
  if (state_ == State::WaitingHead) return 0;  // a 1xx; the real response follows
  message_done_ = true;
  return http::kPauseParser;
}

void ProbeConnection::onSocketEof(int) {
  if (state_ == State::ReadingBody && parser_.needsEof()) parser_.finish();
  gone();
}

void ProbeConnection::gone() {
  if (state_ == State::Closing) return;
  state_ = State::Closing;
  owner_.onProbeGone(*this);
  socket_.close();
}

void ProbeConnection::close() {
  if (state_ == State::Closing) return;
  state_ = State::Closing;
  socket_.close();
}

void ProbeConnection::onSocketClosed() { owner_.onProbeClosed(*this); }

}  // namespace loopguard::advice
