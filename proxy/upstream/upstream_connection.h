// One connection to an upstream endpoint (an app process or an offload worker), carrying one
// request at a time. Owns its socket and the llhttp response parser. Deletes itself from its
// socket's close callback; its Owner (the pool it belongs to) is told first.
#pragma once

#include <uv.h>

#include <memory>
#include <string>

#include "common/intrusive_list.h"
#include "common/net/socket.h"
#include "common/uv/timer.h"
#include "proxy/http/message_parser.h"
#include "proxy/upstream/target.h"

namespace loopguard::upstream {

class ConnectionPool;

// What the ConnectionPool that owns a connection keeps on it; only that pool touches it.
struct PoolLink : ListNode<PoolLink> {
  enum class Stage { Connecting, SetAside, InUse, Idle, Closing };
  ConnectionPool* pool = nullptr;
  UpstreamConnection* connection = nullptr;
  Stage stage = Stage::Connecting;
  TargetWaiter* waiter = nullptr;  // Connecting: the fresh request it is for; SetAside: who gets it
  int connect_status = 0;          // why a connect failed before it started
};

// The exchange currently using the connection.
class UpstreamHandler {
 public:
  virtual ~UpstreamHandler() = default;
  virtual void onUpstreamWritten(int status) = 0;
  virtual void onUpstreamInput() = 0;  // new bytes in socket().input(), to parse when ready
  virtual void onUpstreamClosed(int status) = 0;  // EOF/reset while a request is on it
  // The owner gave up on the request (e.g. a worker killed at request_timeout).
  virtual void onUpstreamFailed(UpstreamErrorKind kind, const char* why) = 0;
};

// The pool the connection belongs to.
class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  virtual void onConnectResult(UpstreamConnection* connection, int status) = 0;
  virtual void onIdleClosed(UpstreamConnection* connection) = 0;  // left the idle set
  virtual void onConnectionGone(UpstreamConnection* connection) = 0;  // about to be deleted
};

class UpstreamConnection final : private net::SocketEvents {
 public:
  enum class State { Connecting, Idle, Active, Tunnel, Closing };

  UpstreamConnection(uv_loop_t* loop, net::BufferPool& pool, ConnectionOwner& owner,
                     std::string peer_name);
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  int connectTcp(const sockaddr* addr, uint64_t timeout_ms);
  int connectUnix(const std::string& path, uint64_t timeout_ms);

  // Pool side.
  void becomeIdle(uint64_t idle_timeout_ms);
  // Exchange side.
  void attach(UpstreamHandler* handler, http::ParserEvents* events, uint64_t max_head_bytes);
  void detach();  // the exchange is done with it (the pool decides reuse or close)
  void beginTunnel() { state_ = State::Tunnel; }

  // Closes now. Safe in any state; deletion follows from the close callback.
  void close();
  // The owner gives up on the request in progress: the handler hears why, then it closes.
  void fail(UpstreamErrorKind kind, const char* why);
  UpstreamHandler* handler() const { return handler_; }

  State state() const { return state_; }
  net::Socket& socket() { return socket_; }
  http::MessageParser& parser() { return *parser_; }
  bool hasParser() const { return parser_ != nullptr; }  // attached at least once
  const std::string& peerName() const { return peer_name_; }
  uint64_t requestsServed() const { return requests_served_; }
  // The peer closed (EOF or a read error). A worker pool reads this as "the worker may have
  // died" when it happens mid-request.
  bool peerClosed() const { return peer_closed_; }
  void countRequest() { ++requests_served_; }
  // Set by the exchange once the whole request is written (cleared by attach()): a target that
  // takes back an unfinished request knows the upstream is working on it.
  void markRequestSent() { request_sent_ = true; }
  bool requestSent() const { return request_sent_; }
  PoolLink pool_link;

 private:
  ~UpstreamConnection();
  void onSocketRead() override;
  void onSocketEof(int status) override;
  void onSocketWritten(int status) override;
  void onSocketConnected(int status) override;
  void onTimer();
  static void onClosed(void* self);

  uv_loop_t* loop_;
  ConnectionOwner& owner_;
  std::string peer_name_;
  net::Socket socket_;
  uv::Timer timer_;
  State state_ = State::Connecting;
  UpstreamHandler* handler_ = nullptr;
  std::unique_ptr<http::MessageParser> parser_;
  uint64_t requests_served_ = 0;
  uint64_t idle_since_ = 0;
  uint64_t idle_timeout_ms_ = 0;
  bool peer_closed_ = false;
  bool request_sent_ = false;
};

}  // namespace loopguard::upstream
