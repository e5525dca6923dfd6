#include "common/net/socket.h"

#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/slab.h"
#include "common/uv/loop.h"

namespace loopguard::net {

Socket::Socket(uv_loop_t* loop, BufferPool& pool, SocketEvents& events)
    : pool_(pool), events_(events), where_{loop} {}

Socket::~Socket() {
  closeHandle();  // its owner, who would hear of it, is going too
  // Its callbacks may still run (UV_ECANCELED, then the close callback): they find no Socket.
  if (state_ == State::Closing) where_.stream->data = nullptr;
  // libuv reads no byte of a write once its handle is closing: the spill can go now.
  if (write_ != nullptr && write_->spill != nullptr) {
    pool_.give(std::exchange(write_->spill, nullptr), BufferPool::Size::Small);
  }
  if (block_ != nullptr) pool_.give(block_, blockSize());
}

namespace {
// A TCP handle, which every open connection holds for its life, comes from the loop's slab
// (packed, and apart from the heap that requests churn: common/slab.h). Pipes are few.
template <class T>
T* newHandle(uv_loop_t* loop) {
  if constexpr (std::is_same_v<T, uv_tcp_t>) {
    static_assert(alignof(uv_tcp_t) <= Slab::kAlign);
    void* block = uv::Loop::of(loop).slab(sizeof(uv_tcp_t)).allocate();
    return block != nullptr ? new (block) uv_tcp_t{} : nullptr;
  } else {
    (void)loop;
    return new T{};
  }
}
template <class T>
void deleteHandle(T* handle) {
  if constexpr (std::is_same_v<T, uv_tcp_t>) {
    Slab::release(handle);  // trivially destructible
  } else {
    delete handle;
  }
}
}  // namespace

// The handle is allocated alone, as the type it is: a TCP connection does not pay for the
// larger pipe handle, and no close bookkeeping rides along (the Socket keeps it).
template <class T>
int Socket::makeHandle(int (*init)(uv_loop_t*, T*)) {
  if (state_ != State::None) return UV_EALREADY;
  T* handle = newHandle<T>(where_.loop);
  if (handle == nullptr) return UV_ENOMEM;
  int rc = init(where_.loop, handle);
  if (rc != 0) {
    deleteHandle(handle);  // not registered with the loop
    return rc;
  }
  handle->data = this;
  where_.stream = reinterpret_cast<uv_stream_t*>(handle);
  state_ = State::Open;
  return 0;
}

namespace {
int initPipe(uv_loop_t* loop, uv_pipe_t* pipe) { return uv_pipe_init(loop, pipe, 0); }
uv_tcp_t* tcp(uv_stream_t* stream) { return reinterpret_cast<uv_tcp_t*>(stream); }
uv_pipe_t* pipe(uv_stream_t* stream) { return reinterpret_cast<uv_pipe_t*>(stream); }
}  // namespace

int Socket::accept(uv_stream_t* server) {
  bool is_tcp = server->type != UV_NAMED_PIPE;
  int rc = is_tcp ? makeHandle(&uv_tcp_init) : makeHandle(&initPipe);
  if (rc != 0) return rc;
  rc = uv_accept(server, where_.stream);
  if (rc == 0 && is_tcp) uv_tcp_nodelay(tcp(where_.stream), 1);
  return rc;
}

void Socket::onConnected(uv_connect_t* req, int status) {
  auto* self = static_cast<Socket*>(req->handle->data);
  delete req;
  if (self != nullptr) self->events_.onSocketConnected(status);
}

int Socket::connectTcp(const sockaddr* addr) {
  int rc = makeHandle(&uv_tcp_init);
  if (rc != 0) return rc;
  uv_tcp_nodelay(tcp(where_.stream), 1);
  auto* req = new uv_connect_t;
  rc = uv_tcp_connect(req, tcp(where_.stream), addr, &Socket::onConnected);
  if (rc != 0) delete req;  // no callback follows
  return rc;
}

int Socket::connectUnix(const std::string& path) {
  int rc = makeHandle(&initPipe);
  if (rc != 0) return rc;
  // Errors, even immediate ones, come through the callback.
  uv_pipe_connect(new uv_connect_t, pipe(where_.stream), path.c_str(), &Socket::onConnected);
  return 0;
}

int Socket::open(uv_os_fd_t fd) {
  int rc = makeHandle(&initPipe);
  if (rc != 0) return rc;
  return uv_pipe_open(pipe(where_.stream), fd);
}

void Socket::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Socket*>(h->data);
  if (self->block_ == nullptr) {
    if (self->large_reads_ && self->pool_.largeHeldBack(uv_now(h->loop))) {
      self->large_reads_ = false;
    }
    self->large_block_ = self->large_reads_;
    self->block_ = self->pool_.take(self->blockSize());
    self->begin_ = self->end_ = 0;
  }
  buf->base = self->block_ + self->end_;
  buf->len = std::min(BufferPool::bytes(self->blockSize()) - self->end_, self->readLimit());
}

void Socket::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* self = static_cast<Socket*>(s->data);
  if (nread > 0) {
    self->end_ += static_cast<uint32_t>(nread);
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
  if (reading_ || state_ != State::Open) return;
  reading_ = true;
  if (inputFull()) {
    paused_ = true;  // resumed once the block drains
    return;
  }
  if (uv_read_start(where_.stream, &Socket::onAlloc, &Socket::onRead) != 0) reading_ = false;
}

void Socket::readStop() {
  if (!reading_) return;
  reading_ = false;
  if (!paused_ && state_ == State::Open) uv_read_stop(where_.stream);
  paused_ = false;
}

void Socket::pauseReading() {
  if (!reading_ || paused_) return;
  paused_ = true;
  if (state_ == State::Open) uv_read_stop(where_.stream);
}

void Socket::consume(size_t n) {
  begin_ += static_cast<uint32_t>(n);
  releaseBlockIfDrained();
}

void Socket::unlend() {
  --lent_;
  releaseBlockIfDrained();
}

void Socket::setReadLimit(size_t bytes) {
  // Either a whole large block or at most a small one: a large block read only in part would
  // be pinned whole (pooled blocks are touched throughout) when the write of it stalls.
  large_reads_ = bytes >= BufferPool::kLargeBlock;
  // Unparsed input left in a large block (pipelined requests behind a buffered body) may wait
  // a long time for its turn: it moves to a small block, and the large one goes back.
  uint32_t left = end_ - begin_;
  if (!large_reads_ && block_ != nullptr && large_block_ && lent_ == 0 &&
      left <= BufferPool::kSmallBlock) {
    char* small = pool_.take(BufferPool::Size::Small);
    std::memcpy(small, block_ + begin_, left);
    pool_.give(block_, BufferPool::Size::Large);
    block_ = small;
    large_block_ = false;
    begin_ = 0;
    end_ = left;
    if (!inputFull()) resumeIfPaused();
  }
}

void Socket::resumeIfPaused() {
  if (!paused_) return;
  // Never a callback from here: libuv reads on the next loop iteration.
  paused_ = false;
  if (state_ != State::Open ||
      uv_read_start(where_.stream, &Socket::onAlloc, &Socket::onRead) != 0) {
    reading_ = false;
  }
}

size_t Socket::sendRoom() {
  uv_os_fd_t fd;
  if (state_ != State::Open || uv_fileno(reinterpret_cast<uv_handle_t*>(where_.stream), &fd) != 0) {
    return 0;
  }
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
  known_room_ = known_room_ > written ? known_room_ - static_cast<uint32_t>(written) : 0;
  if (known_room_ < BufferPool::kLargeBlock) known_room_ = static_cast<uint32_t>(sendRoom());
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
  pool_.give(block_, blockSize());
  block_ = nullptr;
  begin_ = end_ = 0;
  resumeIfPaused();  // the owner still wants to read: the next read takes a fresh block
}

void Socket::onWritten(uv_write_t* req, int status) {
  std::unique_ptr<PendingWrite> done(reinterpret_cast<PendingWrite*>(req));  // req is first
  auto* self = static_cast<Socket*>(req->handle->data);
  if (self == nullptr) return;  // the Socket is gone, and gave the spill back
  self->write_ = nullptr;
  if (done->spill != nullptr) self->pool_.give(done->spill, BufferPool::Size::Small);
  done.reset();  // a new write from the callback makes its own
  self->events_.onSocketWritten(status);
}

int Socket::startWrite(const uv_buf_t* bufs, unsigned count, char* spill) {
  if (state_ != State::Open) return UV_EPIPE;
  auto write = std::make_unique<PendingWrite>();
  write->spill = spill;
  int rc = uv_write(&write->req, where_.stream, bufs, count, &Socket::onWritten);
  if (rc == 0) write_ = write.release();
  return rc;
}

int Socket::write(const uv_buf_t* bufs, unsigned count) { return startWrite(bufs, count, nullptr); }

Socket::WriteStatus Socket::writeNow(const uv_buf_t* bufs, unsigned count) {
  if (state_ != State::Open) return WriteStatus::Error;
  int n = uv_try_write(where_.stream, bufs, count);
  if (n < 0 && n != UV_EAGAIN) return WriteStatus::Error;
  size_t written = n > 0 ? static_cast<size_t>(n) : 0;
  unsigned i = 0;
  while (i < count && written >= bufs[i].len) {
    written -= bufs[i].len;
    ++i;
  }
  if (i == count) return WriteStatus::Done;
  known_room_ = 0;  // the kernel is full
  bufs += i;
  count -= i;
  size_t left = 0;
  for (unsigned k = 0; k < count; ++k) left += bufs[k].len;
  left -= written;
  if (left <= BufferPool::kSmallBlock) {
    char* spill = pool_.take(BufferPool::Size::Small);
    size_t at = 0;
    for (unsigned k = 0; k < count; ++k) {
      size_t skip = k == 0 ? written : 0;
      std::memcpy(spill + at, bufs[k].base + skip, bufs[k].len - skip);
      at += bufs[k].len - skip;
    }
    uv_buf_t copy = uv_buf_init(spill, static_cast<unsigned>(left));
    if (startWrite(&copy, 1, spill) != 0) {
      pool_.give(spill, BufferPool::Size::Small);
      return WriteStatus::Error;
    }
    return WriteStatus::Copied;
  }
  // uv_write copies the array (not the bytes), so the rest's first buffer, past what was
  // written, can be handed over from a copy that lives only for the call.
  int rc;
  if (written == 0) {
    rc = startWrite(bufs, count, nullptr);
  } else {
    uv_buf_t inline_rest[16];
    std::vector<uv_buf_t> heap_rest;
    uv_buf_t* rest = inline_rest;
    if (count > std::size(inline_rest)) {
      heap_rest.resize(count);
      rest = heap_rest.data();
    }
    std::copy(bufs, bufs + count, rest);
    rest[0].base += written;
    rest[0].len -= written;
    rc = startWrite(rest, count, nullptr);
  }
  return rc == 0 ? WriteStatus::Pending : WriteStatus::Error;
}

size_t Socket::writeQueueSize() const {
  return state_ == State::Open ? where_.stream->write_queue_size : 0;
}

size_t Socket::unsentBytes() const {
  uv_os_fd_t fd;
  if (state_ != State::Open || uv_fileno(reinterpret_cast<uv_handle_t*>(where_.stream), &fd) != 0) {
    return 0;
  }
  int in_kernel = 0;
  if (ioctl(fd, SIOCOUTQ, &in_kernel) != 0 || in_kernel < 0) in_kernel = 0;
  return writeQueueSize() + static_cast<size_t>(in_kernel);
}

void Socket::resetOnClose() {
  uv_os_fd_t fd;
  if (state_ != State::Open || where_.stream->type != UV_TCP ||
      uv_fileno(reinterpret_cast<uv_handle_t*>(where_.stream), &fd) != 0) {
    return;
  }
  linger l{};
  l.l_onoff = 1;
  l.l_linger = 0;
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

int Socket::shutdown() {
  if (state_ != State::Open) return UV_EPIPE;
  auto* req = new uv_shutdown_t;
  int rc = uv_shutdown(req, where_.stream, [](uv_shutdown_t* done, int) { delete done; });
  if (rc != 0) delete req;  // no callback follows
  return rc;
}

void Socket::onHandleClosed(uv_handle_t* h) {
  auto* self = static_cast<Socket*>(h->data);
  uv_loop_t* loop = h->loop;
  if (h->type == UV_TCP) {
    deleteHandle(reinterpret_cast<uv_tcp_t*>(h));
  } else {
    deleteHandle(reinterpret_cast<uv_pipe_t*>(h));
  }
  if (self == nullptr) return;  // the Socket went first: its owner is gone too
  self->where_.loop = loop;
  self->state_ = State::Closed;
  self->events_.onSocketClosed();  // may delete self
}

void Socket::close() {
  if (closeHandle()) events_.onSocketClosed();  // may delete this
}

bool Socket::closeHandle() {
  reading_ = false;
  paused_ = false;
  if (state_ == State::Closing || state_ == State::Closed) return false;
  if (state_ == State::None) {
    // No handle: nothing pending can refer to this Socket.
    state_ = State::Closed;
    return true;
  }
  state_ = State::Closing;
  // Pending requests complete (UV_ECANCELED) before onHandleClosed frees the handle.
  uv_close(reinterpret_cast<uv_handle_t*>(where_.stream), &Socket::onHandleClosed);
  return false;
}

PeerAddress Socket::peerAddress() const {
  if (state_ != State::Open || where_.stream->type != UV_TCP) return {};
  sockaddr_storage addr{};
  int len = sizeof(addr);
  if (uv_tcp_getpeername(tcp(where_.stream), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return {};
  }
  return PeerAddress::of(reinterpret_cast<const sockaddr*>(&addr));
}

std::string Socket::peerIp() const {
  std::string text;
  peerAddress().format(text);
  return text;
}

}  // namespace loopguard::net
