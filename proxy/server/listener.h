// The accept loop of one listening socket (TCP or unix). Honours a connection cap: at the cap
// it leaves the next connection un-accepted, which makes libuv stop polling the listening
// socket, so further clients wait in the kernel's backlog; resume() accepts again.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

#include "config/config.h"
#include "common/uv/handle.h"

namespace loopguard::proxy {

class Listener {
 public:
  // Called with the listening stream when a connection is ready to accept().
  using AcceptFn = std::function<void(uv_stream_t* server)>;
  using CanAcceptFn = std::function<bool()>;

  Listener(uv_loop_t* loop, AcceptFn on_accept, CanAcceptFn can_accept);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Binds and listens. On failure returns a libuv error and sets `error`.
  int listen(const config::Address& address, std::string& error);
  // The bound address as text ("127.0.0.1:43211", "unix:/path").
  const std::string& boundAddress() const { return bound_; }

  // A slot freed up: accept the connection held back at the cap, if any.
  void resume();
  void close();
  bool open() const { return !handle_.closed(); }

 private:
  union Storage {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  static void onConnection(uv_stream_t* server, int status);

  uv_loop_t* loop_;
  AcceptFn on_accept_;
  CanAcceptFn can_accept_;
  uv::Handle<Storage> handle_;
  bool held_back_ = false;
  std::string bound_;
  std::string unix_path_;
};

}  // namespace loopguard::proxy
