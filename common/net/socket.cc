#include "common/net/socket.h"

#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace loopguard::net {

Socket::Socket(uv_loop_t* loop, BufferPool& pool, SocketEvents& events)
    : loop_(loop), pool_(pool), events_(events) {
  handle_.get()->tcp.data = this;
}

Socket::~Socket() {
  close();
  if (block_ != nullptr) pool_.give(block_, block_size_);
  if (spill_ != nullptr) pool_.give(spill_, BufferPool::Size::Small);
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
    if (self->read_limit_ == BufferPool::kLargeBlock &&
        self->pool_.largeHeldBack(uv_now(self->loop_))) {
      self->read_limit_ = BufferPool::kSmallBlock;
    }
    self->block_size_ = self->read_limit_ == BufferPool::kLargeBlock ? BufferPool::Size::Large
                                                                     : BufferPool::Size::Small;
    self->block_ = self->pool_.take(self->block_size_);
    self->begin_ = self->end_ = 0;
  }
  buf->base = self->block_ + self->end_;
  buf->len = std::min(BufferPool::bytes(self->block_size_) - self->end_, size_t{self->read_limit_});
}

void Socket::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* self = static_cast<Socket*>(s->data);
  if (nread > 0) {
    self->end_ += static_cast<size_t>(nread);
    // A full block means the owner has not consumed yet: pause until it has (backpressure).
    if (self->inputFull()) self->pauseReading();
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
  reading_ = true;
  if (inputFull()) {
    paused_ = true;  // resumed once the block drains
    return;
  }
  if (uv_read_start(handle_.stream(), &Socket::onAlloc, &Socket::onRead) != 0) reading_ = false;
}

void Socket::readStop() {
  if (!reading_) return;
  reading_ = false;
  if (!paused_ && !handle_.closed()) uv_read_stop(handle_.stream());
  paused_ = false;
}

void Socket::pauseReading() {
  if (!reading_ || paused_) return;
  paused_ = true;
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

void Socket::setReadLimit(size_t bytes) {
  // Either a whole large block or at most a small one: a large block read only in part would
  // be pinned whole (pooled blocks are touched throughout) when the write of it stalls.
  read_limit_ = bytes >= BufferPool::kLargeBlock ? BufferPool::kLargeBlock : BufferPool::kSmallBlock;
  // Unparsed input left in a large block (pipelined requests behind a buffered body) may wait
  // a long time for its turn: it moves to a small block, and the large one goes back.
  size_t left = end_ - begin_;
  if (read_limit_ == BufferPool::kSmallBlock && block_ != nullptr &&
      block_size_ == BufferPool::Size::Large && lent_ == 0 && left <= BufferPool::kSmallBlock) {
    char* small = pool_.take(BufferPool::Size::Small);
    std::memcpy(small, block_ + begin_, left);
    pool_.give(block_, block_size_);
    block_ = small;
    block_size_ = BufferPool::Size::Small;
    begin_ = 0;
    end_ = left;
    if (!inputFull()) resumeIfPaused();
  }
}

void Socket::resumeIfPaused() {
  if (!paused_) return;
  // Never a callback from here: libuv reads on the next loop iteration.
  paused_ = false;
  if (handle_.closed() || uv_read_start(handle_.stream(), &Socket::onAlloc, &Socket::onRead) != 0) {
    reading_ = false;
  }
}

size_t Socket::sendRoom() {
  uv_os_fd_t fd;
  if (handle_.closed() || uv_fileno(handle_.base(), &fd) != 0) return 0;
  // One syscall for both the send buffer's size and what it holds, in the kernel's own units
  // (bytes of payload plus each segment's bookkeeping): a write is taken while the queued
  // total is below the size. TCP counts its queue in WMEM_QUEUED, unix sockets in WMEM_ALLOC.
  uint32_t info[SK_MEMINFO_VARS] = {};
  socklen_t len = sizeof(info);
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, info, &len) != 0) return 0;
  uint32_t queued = std::max(info[SK_MEMINFO_WMEM_QUEUED], info[SK_MEMINFO_WMEM_ALLOC]);
  if (queued >= info[SK_MEMINFO_SNDBUF]) return 0;
  // Half of the free space is payload: segments carry 0.6-0.98 of their size in payload, the
  // least when a peer's tiny receive window makes them small (a slow reader's). Erring low
  // only costs a smaller read.
  return (info[SK_MEMINFO_SNDBUF] - queued) / 2;
}

size_t Socket::sendRoomAfter(size_t written) {
  known_room_ = known_room_ > written ? known_room_ - written : 0;
  if (known_room_ < BufferPool::kLargeBlock) known_room_ = sendRoom();
  return known_room_;
}

void paceReads(Socket& from, Socket& to, Socket::WriteStatus status, size_t bytes) {
  BufferPool& pool = from.pool();
  uint64_t now = uv_now(from.loop());
  if (status == Socket::WriteStatus::Pending || status == Socket::WriteStatus::Copied) {
    // More than a small block left of a large read sent with room for it: the kernel is
    // refusing memory, not this peer being slow.
    if (status == Socket::WriteStatus::Pending && from.readLimit() == BufferPool::kLargeBlock) {
      pool.holdBackLarge(now);
    }
    from.setReadLimit(BufferPool::kSmallBlock);
    from.readStop();
    return;
  }
  if (status != Socket::WriteStatus::Done) return;
  if (from.readLimit() <= BufferPool::kSmallBlock &&
      (bytes < BufferPool::kSmallBlock / 2 || pool.largeHeldBack(now))) {
    return;
  }
  from.setReadLimit(pool.largeHeldBack(now) ? 0 : to.sendRoomAfter(bytes));
}

void Socket::releaseBlockIfDrained() {
  if (block_ == nullptr || begin_ != end_ || lent_ > 0) return;
  pool_.give(block_, block_size_);
  block_ = nullptr;
  begin_ = end_ = 0;
  resumeIfPaused();  // the owner still wants to read: the next read takes a fresh block
}

int Socket::write(const uv_buf_t* bufs, unsigned count) {
  if (handle_.closed()) return UV_EPIPE;
  write_req_ = std::make_unique<uv_write_t>();
  write_req_->data = this;
  int rc = uv_write(write_req_.get(), handle_.stream(), bufs, count, [](uv_write_t* req, int status) {
    auto* self = static_cast<Socket*>(req->data);
    auto done = std::move(self->write_req_);  // freed after the callback; a new write makes its own
    self->writing_ = false;
    if (self->spill_ != nullptr) {
      self->pool_.give(self->spill_, BufferPool::Size::Small);
      self->spill_ = nullptr;
    }
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
  known_room_ = 0;  // the kernel is full
  rest_.assign(bufs + i, bufs + count);
  rest_[0].base += written;
  rest_[0].len -= written;
  size_t left = 0;
  for (const uv_buf_t& b : rest_) left += b.len;
  WriteStatus status = WriteStatus::Pending;
  if (left <= BufferPool::kSmallBlock) {
    spill_ = pool_.take(BufferPool::Size::Small);
    size_t at = 0;
    for (const uv_buf_t& b : rest_) {
      std::memcpy(spill_ + at, b.base, b.len);
      at += b.len;
    }
    rest_.assign(1, uv_buf_init(spill_, static_cast<unsigned>(left)));
    status = WriteStatus::Copied;
  }
  if (write(rest_.data(), static_cast<unsigned>(rest_.size())) != 0) {
    if (spill_ != nullptr) {
      pool_.give(spill_, BufferPool::Size::Small);
      spill_ = nullptr;
    }
    return WriteStatus::Error;
  }
  return status;
}

size_t Socket::writeQueueSize() const {
  return handle_.closed() ? 0 : handle_.stream()->write_queue_size;
}

size_t Socket::unsentBytes() const {
  uv_os_fd_t fd;
  if (handle_.closed() || uv_fileno(handle_.base(), &fd) != 0) return 0;
  int in_kernel = 0;
  if (ioctl(fd, SIOCOUTQ, &in_kernel) != 0 || in_kernel < 0) in_kernel = 0;
  return writeQueueSize() + static_cast<size_t>(in_kernel);
}

void Socket::resetOnClose() {
  uv_os_fd_t fd;
  if (!is_tcp_ || handle_.closed() || uv_fileno(handle_.base(), &fd) != 0) return;
  linger l{};
  l.l_onoff = 1;
  l.l_linger = 0;
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
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
  paused_ = false;
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
