// A connected stream socket (TCP or unix) with the discipline every connection needs:
//  - input lands in a pooled block; the owner parses it in place and consume()s what it used;
//    bytes handed to a write on the other side stay valid while the block is lent();
//  - a read takes at most readLimit() bytes: small by default, large only while the bytes read
//    drain at once on the other side (paceReads());
//  - reading pauses by itself when the block is full, and resumes when the owner has consumed
//    it and nothing is lent (unless the owner stopped reading meanwhile);
//  - at most one write in flight; the owner is told when it completes;
//  - close() defers the owner's deletion to the handle's close callback.
//
// Every idle keep-alive connection carries one of these and its handle, so both are kept small:
// the handle is allocated when accept/connect/open tells its type (a TCP handle is 16 bytes
// smaller than a pipe), and the requests exist only while in flight.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/net/buffer_pool.h"
#include "common/net/peer_address.h"
#include "common/uv/handle.h"

namespace loopguard::net {

class SocketEvents {
 public:
  virtual ~SocketEvents() = default;
  virtual void onSocketRead() = 0;              // new bytes in input()
  virtual void onSocketEof(int status) = 0;     // UV_EOF or a read error
  virtual void onSocketWritten(int status) = 0; // the write in flight completed
  virtual void onSocketConnected(int /*status*/) {}  // connect() result
  // The close() asked for is done: from the handle's close callback, after every pending
  // request completed (UV_ECANCELED); at once when there was no handle yet. Never after the
  // Socket is destroyed. The owner may delete itself, and the Socket, from here.
  virtual void onSocketClosed() {}
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

  // The owner's wish: read (whenever the block has room), or not.
  void readStart();
  void readStop();
  bool reading() const { return reading_; }

  // Unparsed input.
  std::string_view input() const { return {block_ + begin_, end_ - begin_}; }
  void consume(size_t n);
  // While lent, consumed bytes stay in place (a write on the other side points at them).
  void lend() { ++lent_; }
  void unlend();
  bool inputFull() const { return block_ != nullptr && end_ == BufferPool::bytes(blockSize()); }

  // The most one read may take: a large block when `bytes` reach one, else a small block. The
  // next block taken is of that size; a block already held is filled first, except that unread
  // input in a large block moves to a small one when the limit drops (and nothing is lent).
  void setReadLimit(size_t bytes);
  size_t readLimit() const {
    return large_reads_ ? BufferPool::kLargeBlock : BufferPool::kSmallBlock;
  }
  // A low estimate of the bytes the kernel would take now without blocking (0 if unknown).
  size_t sendRoom();
  // The same after `written` more bytes went in at once, asking the kernel only when what is
  // known to fit falls below a large block (its queue only drains meanwhile).
  size_t sendRoomAfter(size_t written);
  BufferPool& pool() { return pool_; }
  uv_loop_t* loop() const { return hasHandle() ? where_.stream->loop : where_.loop; }

  // At most one write in flight: callers check writing() first.
  int write(const uv_buf_t* bufs, unsigned count);

  // The hot-path write: hands the kernel what it takes now (uv_try_write) and queues only the
  // rest. Done: everything was written, the buffers are free again and NO callback follows.
  // Pending: onSocketWritten() follows as for write(). Copied: pending too, but the rest (at
  // most a small block) was copied into the socket's own block, so the caller's buffers are
  // free now: a large read block behind a stalled write goes back to the pool at once instead
  // of staying pinned by a few unsent KiB. Error: nothing was queued.
  // A queued uv_write costs libuv an epoll_ctl when it completes; most writes of a proxy fit
  // in the socket buffer, so this saves two syscalls per proxied request.
  enum class WriteStatus { Done, Pending, Copied, Error };
  WriteStatus writeNow(const uv_buf_t* bufs, unsigned count);
  bool writing() const { return write_ != nullptr; }
  size_t writeQueueSize() const;
  // Bytes written and not yet taken by the peer: libuv's queue plus what the kernel still holds
  // (unsent or unacknowledged, SIOCOUTQ). It falls as the peer reads even while the kernel's
  // buffer is too full for libuv to hand it more (on loopback a third of a send buffer that
  // grows to 4 MiB), so it tells a slow reader from one that stopped.
  size_t unsentBytes() const;
  // The next close() resets the connection (TCP RST: SO_LINGER 0) instead of leaving the kernel
  // to deliver what it holds to a peer that is given up on for not reading it.
  void resetOnClose();

  // Half-close our sending side after pending writes (used for tunnels).
  int shutdown();

  // Starts closing; SocketEvents::onSocketClosed follows (see there). Only the first call
  // counts. The events object hears it rather than a callback stored here: every idle
  // connection holds a Socket, and two more pointers in each are 16 bytes per connection.
  void close();
  bool closed() const { return state_ == State::Closing || state_ == State::Closed; }

  // Peer address as text ("1.2.3.4" / "::1"); empty for unix sockets.
  std::string peerIp() const;
  // The same in binary; unspecified for a unix socket.
  PeerAddress peerAddress() const;
  // The handle once accept/connect/open made it; nullptr before, and once closed.
  uv_stream_t* stream() const { return state_ == State::Open ? where_.stream : nullptr; }

 private:
  // None: no handle yet (accept/connect/open makes it). Open. Closing: close() was called and
  // the close callback has not run. Closed: it has, and the handle's memory is gone.
  enum class State : uint8_t { None, Open, Closing, Closed };
  // A write in flight; the callback reaches the Socket through req.handle->data, which is
  // nullptr once the Socket is gone (it gave the spill back then).
  struct PendingWrite {
    uv_write_t req;
    char* spill = nullptr;  // a small block holding the bytes (WriteStatus::Copied)
  };

  bool hasHandle() const { return state_ == State::Open || state_ == State::Closing; }
  BufferPool::Size blockSize() const {
    return large_block_ ? BufferPool::Size::Large : BufferPool::Size::Small;
  }
  template <class T>
  int makeHandle(int (*init)(uv_loop_t*, T*));
  int startWrite(const uv_buf_t* bufs, unsigned count, char* spill);
  void releaseBlockIfDrained();
  void pauseReading();
  void resumeIfPaused();
  static void onAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onWritten(uv_write_t* req, int status);
  static void onConnected(uv_connect_t* req, int status);
  // Starts closing; true when there was no handle, so it is closed already and nothing follows.
  bool closeHandle();
  static void onHandleClosed(uv_handle_t* h);

  // Packed (56 bytes, which socket_test holds it to): every idle connection carries one.
  BufferPool& pool_;
  SocketEvents& events_;
  // The loop while there is no handle (State None and Closed), else the handle, whose loop it
  // is: one pointer for both. The handle's data points back here until this Socket is gone.
  union Where {
    uv_loop_t* loop;
    uv_stream_t* stream;
  } where_;
  PendingWrite* write_ = nullptr;  // at most one write in flight
  char* block_ = nullptr;
  uint32_t begin_ = 0;  // offsets in the block (at most a large block)
  uint32_t end_ = 0;
  uint32_t known_room_ = 0;  // sendRoomAfter()'s budget (at most half a send buffer)
  uint16_t lent_ = 0;        // a handful at most: the writes pointing into the block
  State state_ = State::None;
  bool reading_ : 1 = false;  // the owner wants input
  bool paused_ : 1 = false;   // ...but the block is full: resumed when it drains
  bool large_block_ : 1 = false;  // block_ is a large block, else a small one
  bool large_reads_ : 1 = false;  // readLimit() is a large block, else a small one
};

// Paces the reads of `from` to how `to` took the last write of their bytes (`bytes` long), so
// that what the proxy holds for a peer that does not read stays small:
//  - the write is pending (or copied): `from` stops reading until it completes, then reads
//    small blocks;
//  - it was taken at once: the next read may be as large as the kernel would take now, up to a
//    large block. The kernel is asked only when the reads are large already or the write was
//    sizeable, so small messages cost no extra syscall.
// Reading a large block only when the other side has room for it is what keeps a peer that
// stops reading from pinning one: the write that finds the kernel full is at most a small block.
void paceReads(Socket& from, Socket& to, Socket::WriteStatus status, size_t bytes);

}  // namespace loopguard::net
