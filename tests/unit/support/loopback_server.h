// A TCP listener on 127.0.0.1:0 on a test's private loop, standing in for an upstream: it
// accepts every connection and keeps it open (reading and dropping what comes) until told to
// close them; given an `answer`, it writes that back for every request head it reads. Nothing
// leaves the machine's loopback; the port is whatever the kernel picked.
#pragma once

#include <uv.h>

#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/uv/handle.h"

namespace loopguard::testing {

class LoopbackServer {
 public:
  explicit LoopbackServer(uv_loop_t* loop, std::string answer = {})
      : loop_(loop), answer_(std::move(answer)) {
    uv_tcp_init(loop, listener_.get());
    listener_.markInitialized();
    listener_.get()->data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_bind(listener_.get(), reinterpret_cast<const sockaddr*>(&addr), 0);
    uv_listen(listener_.stream(), 128, [](uv_stream_t* s, int status) {
      if (status == 0) static_cast<LoopbackServer*>(s->data)->acceptOne();
    });
    int len = sizeof(address_);
    uv_tcp_getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&address_), &len);
  }

  const sockaddr_storage& address() const { return address_; }
  int port() const { return ntohs(reinterpret_cast<const sockaddr_in&>(address_).sin_port); }
  size_t accepted() const { return accepted_; }
  size_t open() const { return peers_.size(); }
  // The app closes every connection it has accepted.
  void closePeers() { peers_.clear(); }
  void close() {
    listener_.close();
    peers_.clear();
  }

 private:
  struct Peer {
    LoopbackServer* server = nullptr;
    uv::Handle<uv_tcp_t> tcp;
    std::string head;  // what came of the current request head (with an answer only)
    uv_write_t write{};
  };
  void acceptOne() {
    auto peer = std::make_unique<Peer>();
    peer->server = this;
    uv_tcp_init(loop_, peer->tcp.get());
    peer->tcp.markInitialized();
    if (uv_accept(listener_.stream(), peer->tcp.stream()) != 0) return;
    ++accepted_;
    peer->tcp.get()->data = peer.get();
    uv_read_start(
        peer->tcp.stream(),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          static char sink[4096];
          *buf = uv_buf_init(sink, sizeof(sink));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          auto* peer = static_cast<Peer*>(s->data);
          if (n > 0) peer->server->answer(*peer, std::string_view(buf->base, size_t(n)));
        });
    peers_.push_back(std::move(peer));
  }
  void answer(Peer& peer, std::string_view bytes) {
    if (answer_.empty()) return;
    peer.head.append(bytes);
    if (peer.head.find("\r\n\r\n") == std::string::npos) return;
    peer.head.clear();
    uv_buf_t out = uv_buf_init(answer_.data(), static_cast<unsigned>(answer_.size()));
    uv_write(&peer.write, peer.tcp.stream(), &out, 1, nullptr);
  }

  uv_loop_t* loop_;
  std::string answer_;
  uv::Handle<uv_tcp_t> listener_;
  std::vector<std::unique_ptr<Peer>> peers_;
  sockaddr_storage address_{};
  size_t accepted_ = 0;
};

// A loopback port with nothing listening on it: connects are refused at once.
inline sockaddr_storage refusingAddress() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);  // bound, never listening: the port is refused, and free again
  sockaddr_storage out{};
  std::memcpy(&out, &addr, sizeof(addr));
  return out;
}

}  // namespace loopguard::testing
