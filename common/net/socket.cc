#include "common/net/socket.h"

#include <cstring>

namespace loopguard::net {

Socket::Socket(uv_loop_t* loop, BufferPool& pool, SocketEvents& events)
    : loop_(loop), pool_(pool), events_(events) {
  handle_.get()->tcp.data = this;
}

Socket::~Socket() {
  close();
  if (block_ != nullptr) pool_.give(block_);
}

int Socket::accept(uv_stream_t* server) {
  int rc;
  if (server->type == UV_NAMED_PIPE) {
    is_tcp_ = false;
    rc = uv_pipe_init(loop_, &handle_.get()->pipe, 0);
  } else {
    rc = uv_tcp_init(loop_, &handle_.get()->tcp);
  }
  if (rc != 0) return rc;
  handle_.markInitialized();
  handle_.get()->tcp.data = this;
  rc = uv_accept(server, handle_.stream());
  if (rc == 0 && is_tcp_) uv_tcp_nodelay(&handle_.get()->tcp, 1);
  return rc;
}

int Socket::connectTcp(const sockaddr* addr) {
  is_tcp_ = true;
  int rc = uv_tcp_init(loop_, &handle_.get()->tcp);
  if (rc != 0) return rc;
  handle_.markInitialized();
  handle_.get()->tcp.data = this;
  uv_tcp_nodelay(&handle_.get()->tcp, 1);
  connect_req_ = std::make_unique<uv_connect_t>();
  connect_req_->data = this;
  return uv_tcp_connect(connect_req_.get(), &handle_.get()->tcp, addr,
                        [](uv_connect_t* req, int status) {
                          auto* self = static_cast<Socket*>(req->data);
                          auto done = std::move(self->connect_req_);
                          self->events_.onSocketConnected(status);
                        });
}

int Socket::connectUnix(const std::string& path) {
  is_tcp_ = false;
  int rc = uv_pipe_init(loop_, &handle_.get()->pipe, 0);
  if (rc != 0) return rc;
  handle_.markInitialized();
  handle_.get()->pipe.data = this;
  connect_req_ = std::make_unique<uv_connect_t>();
  connect_req_->data = this;
  uv_pipe_connect(connect_req_.get(), &handle_.get()->pipe, path.c_str(),
                  [](uv_connect_t* req, int status) {
                    auto* self = static_cast<Socket*>(req->data);
                    auto done = std::move(self->connect_req_);
                    self->events_.onSocketConnected(status);
                  });
  return 0;
}

int Socket::open(uv_os_fd_t fd) {
  is_tcp_ = false;
  int rc = uv_pipe_init(loop_, &handle_.get()->pipe, 0);
  if (rc != 0) return rc;
  handle_.markInitialized();
  handle_.get()->pipe.data = this;
  return uv_pipe_open(&handle_.get()->pipe, fd);
}

void Socket::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Socket*>(h->data);
  if (self->block_ == nullptr) {
    self->block_ = self->pool_.take();
    self->begin_ = self->end_ = 0;
  }
  buf->base = self->block_ + self->end_;
  buf->len = BufferPool::kBlockSize - self->end_;
}

void Socket::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* self = static_cast<Socket*>(s->data);
  if (nread > 0) {
    self->end_ += static_cast<size_t>(nread);
    // A full block means the owner has not consumed yet: stop until it does (backpressure).
    if (self->inputFull()) self->readStop();
    self->events_.onSocketRead();
    return;
  }
  if (nread == 0) {  // EAGAIN: nothing read; give the block back if it holds nothing
    self->releaseBlockIfDrained();
    return;
  }
  self->readStop();
  self->releaseBlockIfDrained();
  self->events_.onSocketEof(static_cast<int>(nread));
}

void Socket::readStart() {
  if (reading_ || handle_.closed() || !handle_.initialized()) return;
  if (inputFull()) return;  // resumed by consume()
  if (uv_read_start(handle_.stream(), &Socket::onAlloc, &Socket::onRead) == 0) reading_ = true;
}

void Socket::readStop() {
  if (!reading_) return;
  reading_ = false;
  if (!handle_.closed()) uv_read_stop(handle_.stream());
}

void Socket::consume(size_t n) {
  begin_ += n;
  releaseBlockIfDrained();
}

void Socket::unlend() {
  --lent_;
  releaseBlockIfDrained();
}

void Socket::releaseBlockIfDrained() {
  if (block_ == nullptr || begin_ != end_ || lent_ > 0) return;
  pool_.give(block_);
  block_ = nullptr;
  begin_ = end_ = 0;
}

int Socket::write(const uv_buf_t* bufs, unsigned count) {
  if (handle_.closed()) return UV_EPIPE;
  write_req_ = std::make_unique<uv_write_t>();
  write_req_->data = this;
  int rc = uv_write(write_req_.get(), handle_.stream(), bufs, count, [](uv_write_t* req, int status) {
    auto* self = static_cast<Socket*>(req->data);
    auto done = std::move(self->write_req_);  // freed after the callback; a new write makes its own
    self->writing_ = false;
    self->events_.onSocketWritten(status);
  });
  if (rc == 0) {
    writing_ = true;
  } else {
    write_req_.reset();
  }
  return rc;
}

Socket::WriteStatus Socket::writeNow(const uv_buf_t* bufs, unsigned count) {
  if (handle_.closed()) return WriteStatus::Error;
  int n = uv_try_write(handle_.stream(), bufs, count);
  if (n < 0 && n != UV_EAGAIN) return WriteStatus::Error;
  size_t written = n > 0 ? static_cast<size_t>(n) : 0;
  unsigned i = 0;
  while (i < count && written >= bufs[i].len) {
    written -= bufs[i].len;
    ++i;
  }
  if (i == count) return WriteStatus::Done;
  rest_.assign(bufs + i, bufs + count);
  rest_[0].base += written;
  rest_[0].len -= written;
  return write(rest_.data(), static_cast<unsigned>(rest_.size())) == 0 ? WriteStatus::Pending
                                                                        : WriteStatus::Error;
}

size_t Socket::writeQueueSize() const {
  return handle_.closed() ? 0 : handle_.stream()->write_queue_size;
}

int Socket::shutdown() {
  if (handle_.closed()) return UV_EPIPE;
  shutdown_req_ = std::make_unique<uv_shutdown_t>();
  shutdown_req_->data = this;
  return uv_shutdown(shutdown_req_.get(), handle_.stream(), [](uv_shutdown_t* req, int) {
    static_cast<Socket*>(req->data)->shutdown_req_.reset();
  });
}

void Socket::close(ClosedFn on_closed, void* ctx) {
  reading_ = false;
  handle_.close(on_closed, ctx);
}

std::string Socket::peerIp() const {
  if (!is_tcp_ || handle_.closed()) return {};
  sockaddr_storage addr{};
  int len = sizeof(addr);
  if (uv_tcp_getpeername(&handle_.get()->tcp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return {};
  }
  char text[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<sockaddr_in*>(&addr), text, sizeof(text));
  } else if (addr.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&addr), text, sizeof(text));
  }
  return text;
}

}  // namespace loopguard::net
