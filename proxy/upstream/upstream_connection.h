// One connection to an upstream endpoint (an app process or an offload worker), carrying one
// request at a time. Owns its HttpStream (socket, response parser, output batch) and its one
// deadline (connect, then idle, in its pool's UpstreamTimeouts). While a request is on it the
// exchange is the stream's handler (attach()); between requests the connection is, and reads
// nothing but "the peer closed" or bytes that mean the peer is confused. Its Owner (the pool it
// belongs to) holds it in an OwnedList from connect to close, and retires it when the socket's
// close callback tells it the connection is gone (onConnectionGone): it never deletes itself.
//
// Allocated in the loop's slab (common/slab.h), as its TCP handle is: the connections a burst
// leaves idle stay packed together, apart from the heap pages the burst's requests used.
#pragma once

#include <uv.h>

#include <memory>
#include <string>

#include "common/intrusive_list.h"
#include "common/owned_list.h"
#include "common/slab.h"
#include "common/uv/timeout_queue.h"
#include "proxy/http/message_parser.h"
#include "proxy/stream/http_stream.h"
#include "proxy/upstream/lease.h"
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

// The pool the connection belongs to.
class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  virtual void onConnectResult(UpstreamConnection* connection, int status) = 0;
  virtual void onIdleClosed(UpstreamConnection* connection) = 0;  // left the idle set
  // From the close callback: the owner retires it from its set now (deleted at the end of the
  // loop turn). Nothing else is called on the owner after this.
  virtual void onConnectionGone(UpstreamConnection* connection) = 0;
};

// The deadlines of one pool's connections, a queue per duration shared by all of them: a
// connection carries a Timeout entry, not a timer handle of its own.
struct UpstreamTimeouts {
  // An idle connection keeps the parser and output batch of its last request this long, for
  // the next request to reuse, then gives them up and holds little more than its socket. So the
  // connections a burst leaves idle do not keep its buffers, nor pin the heap pages it used.
  static constexpr uint64_t kKeepPartsMs = 500;
  UpstreamTimeouts(uv_loop_t* loop, uint64_t connect_ms, uint64_t idle_ms,
                   uint64_t keep_parts_ms = kKeepPartsMs);
  uv::TimeoutQueue connect;
  uv::TimeoutQueue keep_parts;  // the first min(keep_parts_ms, idle_ms) of the idle timeout
  uv::TimeoutQueue idle_rest;   // the rest of it (duration 0: none)
};

// The set a pool holds its connections in.
using ConnectionSet = OwnedList<UpstreamConnection>;

class UpstreamConnection final : public ListNode<UpstreamConnection>,
                                 public SlabAllocated,
                                 public Lease,
                                 private proxy::StreamHandler {
 public:
  // A target takes back only the leases it handed out, all of them its own connections: the
  // one place a Lease becomes a connection again.
  static UpstreamConnection& of(Lease& lease) { return static_cast<UpstreamConnection&>(lease); }
  static const UpstreamConnection& of(const Lease& lease) {
    return static_cast<const UpstreamConnection&>(lease);
  }

  enum class State { Connecting, Idle, Active, Tunnel, Closing };

  UpstreamConnection(uv_loop_t* loop, net::BufferPool& pool, ConnectionOwner& owner,
                     UpstreamTimeouts& timeouts, std::string peer_name);
  // Only its owner's ConnectionSet destroys it, once onConnectionGone() was called.
  ~UpstreamConnection() override;
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  // Within timeouts.connect.
  int connectTcp(const sockaddr* addr);
  int connectUnix(const std::string& path);

  // Pool side: idle until attach() or close(); closes itself once the idle timeout passes.
  void becomeIdle();
  // Exchange side: `handler` drives the stream until detach(); the parser is reset for a new
  // response.
  void attach(UpstreamStreamHandler& handler, uint64_t max_head_bytes) override;
  void detach() override;  // the exchange is done with it (the pool decides reuse or close)
  void beginTunnel() override;

  // Closes now. Safe in any state; onConnectionGone() follows from the close callback.
  void close();
  // The owner gives up on the request in progress: the handler hears why, then it closes.
  void fail(UpstreamErrorKind kind, const char* why);

  State state() const { return state_; }
  proxy::HttpStream& stream() override { return stream_; }
  net::Socket& socket() { return stream_.socket(); }
  http::MessageParser& parser() override { return parts_->parser; }
  // Parts attached: from attach() until it has been idle for kKeepPartsMs.
  bool hasParser() const { return parts_ != nullptr; }
  const std::string& peerName() const override { return peer_name_; }
  uint64_t requestsServed() const override { return requests_served_; }
  // The peer closed (EOF or a read error). A worker pool reads this as "the worker may have
  // died" when it happens mid-request.
  bool peerClosed() const { return stream_.peerClosed(); }
  void countRequest() override { ++requests_served_; }
  // Set by the exchange once the whole request is written (cleared by attach()): a target that
  // takes back an unfinished request knows the upstream is working on it.
  void markRequestSent() override { request_sent_ = true; }
  bool requestSent() const { return request_sent_; }
  PoolLink pool_link;

 private:
  // StreamHandler, between requests (connecting, idle, set aside for a waiter).
  http::ParserAction onStreamHead(proxy::HttpStream&) override { return http::ParserAction::Fail; }
  http::ParserAction onStreamBody(proxy::HttpStream&, const char*, size_t) override {
    return http::ParserAction::Fail;
  }
  http::ParserAction onStreamMessageEnd(proxy::HttpStream&) override {
    return http::ParserAction::Fail;
  }
  void onStreamParsed(proxy::HttpStream&, const http::ParseResult&) override {}
  void onStreamData(proxy::HttpStream& stream) override;
  void onStreamWritten(proxy::HttpStream&, int) override {}  // nothing of its own to write
  void onStreamEof(proxy::HttpStream& stream, int status) override;
  void onStreamConnected(proxy::HttpStream& stream, int status) override;
  void onStreamClosed(proxy::HttpStream& stream) override;
  void onTimeout();
  void resetParser(uint64_t max_head_bytes);
  void dropParts();

  // Where an idle connection is in its idle timeout.
  enum class IdleStage : uint8_t { KeepsParts, Bare };

  ConnectionOwner& owner_;
  UpstreamTimeouts& timeouts_;
  std::string peer_name_;
  // Made by attach() when missing, attached until dropped (before stream_: it outlives it).
  std::unique_ptr<proxy::StreamParts> parts_;
  proxy::HttpStream stream_;
  uv::Timeout timeout_{this, &uv::bindMethod<UpstreamConnection, &UpstreamConnection::onTimeout>};
  UpstreamStreamHandler* handler_ = nullptr;  // the stream's handler while set
  uint64_t requests_served_ = 0;
  State state_ = State::Connecting;
  IdleStage idle_stage_ = IdleStage::KeepsParts;
  bool request_sent_ = false;
};

}  // namespace loopguard::upstream
