// A connected stream socket (TCP or unix) with the discipline every connection needs:
//  - input lands in a pooled block; the owner parses it in place and consume()s what it used;
//    bytes handed to a write on the other side stay valid while the block is lent();
//  - reading stops by itself when the block is full (the owner resumes after consuming);
//  - at most one write in flight; the owner is told when it completes;
//  - close() defers the owner's deletion to the handle's close callback.
#pragma once

#include <uv.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/net/buffer_pool.h"
#include "common/uv/handle.h"

namespace loopguard::net {

class SocketEvents {
 public:
  virtual ~SocketEvents() = default;
  virtual void onSocketRead() = 0;              // new bytes in input()
  virtual void onSocketEof(int status) = 0;     // UV_EOF or a read error
  virtual void onSocketWritten(int status) = 0; // the write in flight completed
  virtual void onSocketConnected(int /*status*/) {}  // connect() result
};

class Socket {
 public:
  Socket(uv_loop_t* loop, BufferPool& pool, SocketEvents& events);
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // Server side: accept a pending connection from `server` (TCP or pipe, as the server is).
  int accept(uv_stream_t* server);
  // Client side: starts a connect; onSocketConnected() follows (never synchronously).
  int connectTcp(const sockaddr* addr);
  int connectUnix(const std::string& path);
  // An already connected unix-domain socket (a socketpair end; tests). Takes the fd over.
  int open(uv_os_fd_t fd);

  void readStart();
  void readStop();
  bool reading() const { return reading_; }

  // Unparsed input.
  std::string_view input() const { return {block_ + begin_, end_ - begin_}; }
  void consume(size_t n);
  // While lent, consumed bytes stay in place (a write on the other side points at them).
  void lend() { ++lent_; }
  void unlend();
  bool inputFull() const { return block_ != nullptr && end_ == BufferPool::kBlockSize; }

  // At most one write in flight: callers check writing() first.
  int write(const uv_buf_t* bufs, unsigned count);

  // The hot-path write: hands the kernel what it takes now (uv_try_write) and queues only the
  // rest. Done: everything was written, the buffers are free again and NO callback follows.
  // Pending: onSocketWritten() follows as for write(). Error: nothing was queued.
  // A queued uv_write costs libuv an epoll_ctl when it completes; most writes of a proxy fit
  // in the socket buffer, so this saves two syscalls per proxied request.
  enum class WriteStatus { Done, Pending, Error };
  WriteStatus writeNow(const uv_buf_t* bufs, unsigned count);
  bool writing() const { return writing_; }
  size_t writeQueueSize() const;

  // Half-close our sending side after pending writes (used for tunnels).
  int shutdown();

  using ClosedFn = uv::Handle<uv_tcp_t>::ClosedFn;
  void close(ClosedFn on_closed = nullptr, void* ctx = nullptr);
  bool closed() const { return handle_.closed(); }

  // Peer address as text ("1.2.3.4" / "::1"); empty for unix sockets.
  std::string peerIp() const;
  uv_stream_t* stream() const { return handle_.stream(); }

 private:
  union Storage {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };

  void releaseBlockIfDrained();
  static void onAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);

  uv_loop_t* loop_;
  BufferPool& pool_;
  SocketEvents& events_;
  uv::Handle<Storage> handle_;
  bool is_tcp_ = true;
  bool reading_ = false;
  bool writing_ = false;
  // Requests live only while in flight (most writes complete at once through writeNow), so an
  // idle connection does not carry ~370 bytes of request structs.
  std::unique_ptr<uv_write_t> write_req_;
  std::unique_ptr<uv_connect_t> connect_req_;
  std::unique_ptr<uv_shutdown_t> shutdown_req_;
  std::vector<uv_buf_t> rest_;  // what writeNow() could not write at once
  char* block_ = nullptr;
  size_t begin_ = 0;
  size_t end_ = 0;
  int lent_ = 0;
};

}  // namespace loopguard::net
