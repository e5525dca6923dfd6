// The admin listener: a deliberately small HTTP/1.1 server on the proxy's own loop. One request
// per connection (answered with Connection: close), so it shares no state with the data path
// and stays responsive while routes are saturated: it never waits on a limiter or upstream.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/net/buffer_pool.h"
#include "common/owned_list.h"
#include "config/config.h"
#include "proxy/admin/access_policy.h"
#include "proxy/server/listener.h"

namespace loopguard::admin {

struct AdminRequest {
  std::string method;
  std::string path;  // without the query string
  std::string query;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers = {};  // extra response headers
};

using AdminHandler = std::function<AdminResponse(const AdminRequest&)>;

class AdminServer {
 public:
  AdminServer(uv_loop_t* loop, AdminHandler handler);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  bool start(const config::Address& address, std::string& error);
  const std::string& boundAddress() const { return listener_.boundAddress(); }
  // Consulted for every request before the handler sees it (proxy/admin/access_policy.h).
  AdminAccessPolicy& policy() { return policy_; }
  // Stops accepting and closes open admin connections. The server must outlive their close
  // callbacks (it is destroyed once the loop has run them).
  void close();

 private:
  class Connection;
  void acceptOne(uv_stream_t* server);
  // From a connection's close callback: it leaves the set (deleted at the end of the loop turn).
  void onConnectionClosed(Connection& connection);

  uv_loop_t* loop_;
  AdminHandler handler_;
  AdminAccessPolicy policy_;
  bool unix_listener_ = false;  // its peers are local: the socket file's permissions guard it
  net::BufferPool buffers_{8};
  proxy::Listener listener_;
  OwnedList<Connection> connections_;  // open or closing
};

}  // namespace loopguard::admin
