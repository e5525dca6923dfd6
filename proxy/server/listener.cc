#include "proxy/server/listener.h"

#include <unistd.h>

#include <cstring>

namespace loopguard::proxy {

Listener::Listener(uv_loop_t* loop, AcceptFn on_accept, CanAcceptFn can_accept)
    : loop_(loop), on_accept_(std::move(on_accept)), can_accept_(std::move(can_accept)) {}

int Listener::listen(const config::Address& address, std::string& error) {
  int rc;
  if (address.kind == config::Address::Kind::Unix) {
    rc = uv_pipe_init(loop_, &handle_.get()->pipe, 0);
    if (rc != 0) return error = uv_strerror(rc), rc;
    handle_.markInitialized();
    handle_.get()->pipe.data = this;
    // A socket file left by a previous run would make bind fail; it is ours to replace.
    ::unlink(address.path.c_str());
    rc = uv_pipe_bind(&handle_.get()->pipe, address.path.c_str());
    if (rc != 0) return error = "bind " + address.path + ": " + uv_strerror(rc), rc;
    unix_path_ = address.path;
    bound_ = "unix:" + address.path;
  } else {
    sockaddr_storage addr{};
    if (uv_ip4_addr(address.host.c_str(), address.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
        uv_ip6_addr(address.host.c_str(), address.port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
      error = "listen address must be a literal IP: " + address.host;
      return UV_EINVAL;
    }
    rc = uv_tcp_init(loop_, &handle_.get()->tcp);
    if (rc != 0) return error = uv_strerror(rc), rc;
    handle_.markInitialized();
    handle_.get()->tcp.data = this;
    rc = uv_tcp_bind(&handle_.get()->tcp, reinterpret_cast<sockaddr*>(&addr), 0);
    if (rc != 0) return error = "bind " + address.toString() + ": " + uv_strerror(rc), rc;
  }
  rc = uv_listen(handle_.stream(), 1024, &Listener::onConnection);
  if (rc != 0) return error = "listen " + address.toString() + ": " + uv_strerror(rc), rc;
  if (address.kind == config::Address::Kind::Tcp) {
    sockaddr_storage name{};
    int len = sizeof(name);
    uv_tcp_getsockname(&handle_.get()->tcp, reinterpret_cast<sockaddr*>(&name), &len);
    char host[INET6_ADDRSTRLEN] = {0};
    int port;
    if (name.ss_family == AF_INET6) {
      auto* a6 = reinterpret_cast<sockaddr_in6*>(&name);
      uv_ip6_name(a6, host, sizeof(host));
      port = ntohs(a6->sin6_port);
      bound_ = "[" + std::string(host) + "]:" + std::to_string(port);
    } else {
      auto* a4 = reinterpret_cast<sockaddr_in*>(&name);
      uv_ip4_name(a4, host, sizeof(host));
      port = ntohs(a4->sin_port);
      bound_ = std::string(host) + ":" + std::to_string(port);
    }
  }
  return 0;
}

void Listener::onConnection(uv_stream_t* server, int status) {
  auto* self = static_cast<Listener*>(server->data);
  if (status != 0) return;  // EMFILE and friends: libuv retries on the next readiness
  if (!self->can_accept_()) {
    self->held_back_ = true;  // libuv stops polling until we accept
    return;
  }
  self->on_accept_(server);
}

void Listener::resume() {
  if (!held_back_ || handle_.closed()) return;
  if (!can_accept_()) return;
  held_back_ = false;
  on_accept_(handle_.stream());
}

void Listener::close() {
  if (handle_.closed()) return;
  handle_.close();
  if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
}

}  // namespace loopguard::proxy
