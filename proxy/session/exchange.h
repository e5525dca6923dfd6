// One request's life, from a parsed head to the last response byte, as explicit phases: a relay
// between two HttpStreams, the client's and the upstream connection's. It drives both streams
// while it runs (it is their StreamHandler), and knows nothing of the connection classes: the
// client side is an HttpStream and an ExchangeClient, the upstream side what the route's target
// hands out.
// Every
// path (response done, client gone, upstream error, timeout, refusal) ends in exactly one
// finish(), which releases what was taken: the route slot, the upstream connection, the timers.
//
// Bodies are never copied on the streaming path: spans of one side's read buffer go into a
// writev on the other side, and that buffer stays lent (and that side stops parsing) until the
// write completes. One write in flight per socket; a slow reader therefore stops the reads on the
// other side instead of growing a buffer.
//
// Silence is bounded on both sides, so nobody holds a slot or a connection by going quiet:
// timeouts.body while the exchange waits for request body bytes (408), timeouts.send while a
// write to the client makes no progress (the connection is closed), the upstream's
// response_timeout until the response head (504) and its read_timeout while bytes move (504, or
// the response is cut). Each timer re-arms lazily: a read only notes the time, and the timer,
// when it fires, checks whether the wait it was armed for is still on and how long it has
// really been quiet.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include "proxy/http/header_rules.h"
#include "proxy/http/message_parser.h"
#include "proxy/session/exchange_observer.h"
#include "proxy/output_batch.h"
#include "proxy/proxy_context.h"
#include "proxy/routing/limiter.h"
#include "proxy/stream/http_stream.h"
#include "proxy/upstream/lease.h"
#include "proxy/upstream/target.h"
#include "common/uv/loop.h"
#include "common/uv/timer.h"

namespace loopguard::proxy {

// How a client connection goes on once an exchange is done with it.
enum class AfterExchange {
  KeepAlive,  // read the next request
  Close,      // nothing more will come (or nothing more matters): close now
  Reset,      // given up on (it stopped reading): close now, dropping what the kernel still holds
  Linger,     // the client may still be sending: drain its input for a while, then close
};

// The client side, as the exchange sees it besides its stream: who it is (the text of its
// address, for the access log and X-Forwarded-For) and whom to tell when the exchange is done
// (the stream is then the connection's again). Plain data held by the pooled exchange, not an
// interface of the connection: an idle connection pays nothing for it.
struct ExchangeClient {
  const std::string* peer_ip = nullptr;
  void* connection = nullptr;
  void (*done)(void* connection, AfterExchange after) = nullptr;
};

class Exchange final : private routing::LimiterWaiter,
                       private upstream::TargetWaiter,
                       private upstream::UpstreamStreamHandler {
 public:
  // The phase says what the exchange waits for, and which of its resources it holds: the
  // route's slot from Connecting to the end of Tunnel (slotHeld()), an upstream connection in
  // Forwarding and Tunnel.
  enum class Phase {
    Idle,           // no request
    Routing,        // the head is checked and matched to a route (within start())
    BufferingBody,  // buffer_request: reading the whole body before asking for a slot
    Queued,         // waiting in the route's limiter
    Connecting,     // slot held; waiting for an upstream connection
    Forwarding,     // request going up and/or response coming down
    Tunnel,         // after a 101: raw bytes both ways
    Finishing,      // last bytes of a response the proxy made itself are being written
  };

  explicit Exchange(ProxyContext& context);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // The client stream this (pooled) exchange serves, and its connection.
  void bind(HttpStream& client, const ExchangeClient& owner) {
    client_ = &client;
    owner_ = owner;
  }
  // What drives the client stream while the exchange runs (set it before start()).
  StreamHandler& streamHandler() { return *this; }
  // The request head has been parsed (the client's stream is paused after it).
  void start(bool has_body);
  // The client is gone (or its connection closes): the exchange ends now.
  void onClientGone();

  Phase phase() const { return phase_; }
  bool active() const { return phase_ != Phase::Idle; }
  // Whether a request left it with buffers too large to keep in the pool of idle states.
  bool holdsLargeBuffers() const;

 private:
  static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  // One state machine per direction, besides the phase.
  // The request, client -> upstream: its head is parsed (Head), its body is read (Body), all of
  // it is read from the client (Complete), and written upstream on this attempt (Sent; a retry
  // goes back to Complete).
  enum class RequestSide { Head, Body, Complete, Sent };
  // The response, upstream -> client: nothing yet (None), its head is queued for the client
  // (HeadQueued), its body streams (Body), all of it is in (Complete); or a 101 is on its way
  // to the client, after which the exchange becomes a tunnel (Upgraded).
  enum class ResponseSide { None, HeadQueued, Body, Complete, Upgraded };
  // How the client side ended, when not normally: its body stopped arriving (TimedOut: 408, and
  // nothing to linger for), or it stopped reading (Stalled: its connection is reset).
  enum class ClientEnd : uint8_t { Normal, TimedOut, Stalled };
  bool requestRead() const {
    return request_side_ == RequestSide::Complete || request_side_ == RequestSide::Sent;
  }
  bool slotHeld() const {
    return phase_ == Phase::Connecting || phase_ == Phase::Forwarding || phase_ == Phase::Tunnel;
  }

  // Start-up steps.
  bool route();
  void admit();
  void acquireTarget();
  void sendRequestHead();

  // Request body streaming (client -> upstream).
  void pumpRequestBody();
  // Body pieces, the end of the request, the end of a parse round: the client stream's events.
  http::ParserAction onRequestBody(const char* at, size_t len);
  void onRequestComplete();
  void onRequestParsed(const http::ParseResult& r);
  void flushUpstream();
  void noteRequestSent();
  // The upstream has a write to take (one the kernel took whole, its completion still queued,
  // does not count: the batch is free again).
  bool upstreamWriting() const { return upstream_ != nullptr && upstream_->stream().busy(); }
  OutputBatch& toUpstream() { return upstream_->stream().out(); }

  // Response streaming (upstream -> client).
  void readResponse();
  void flushClient();
  void onClientWritten(int status);
  // A client write waits for the client. One the kernel took whole (its completion still
  // queued) does not hold the upstream's bytes up: the next piece goes out as it arrives
  // instead of piling up in a read block sized for one write (HttpStream::busy()).
  bool clientBusy() const { return client_->busy(); }
  OutputBatch& toClient() { return client_->out(); }

  // Ends.
  void respondError(int status, const char* message, const char* overload_reason = "");
  void upstreamFailed(upstream::UpstreamErrorKind kind, const char* why);
  // Aborted: the response was cut or the client is gone, so its connection closes at once.
  void finish(bool aborted = false);
  void abort(const char* why);
  void releaseSlot();
  void releaseUpstream(bool reusable);
  void recordMetrics();

  // Tunnel.
  void startTunnel();
  void pumpTunnel();

  // LimiterWaiter
  void onAdmitted() override;
  void onQueueTimeout() override;
  void onEvicted() override;
  void recordQueueRefusal();
  // This attempt's outcome, to the observers, once its request was sent
  // (proxy/session/exchange_observer.h).
  void endAttempt(routing::SampleOutcome outcome);
  // TargetWaiter
  void onTargetReady(upstream::Lease* connection, bool reused) override;
  void onTargetFailed(upstream::UpstreamErrorKind kind, const char* why) override;
  // StreamHandler of both streams: the client's (the request body, the response's writes, the
  // client's close, a tunnel's bytes) and the upstream connection's (the response, the
  // request's writes, the peer's close, a tunnel's bytes); each event says which stream it is
  // about. UpstreamStreamHandler: the pool giving up on the request.
  http::ParserAction onStreamHead(HttpStream& stream) override;
  http::ParserAction onStreamBody(HttpStream& stream, const char* at, size_t len) override;
  http::ParserAction onStreamMessageEnd(HttpStream& stream) override;
  void onStreamParsed(HttpStream& stream, const http::ParseResult& result) override;
  void onStreamData(HttpStream& stream) override;
  void onStreamWritten(HttpStream& stream, int status) override;
  void onStreamEof(HttpStream& stream, int status) override;
  void onUpstreamFailed(upstream::UpstreamErrorKind kind, const char* why) override;

  void handleUpstreamEof();
  void upstreamTimedOut(const char* why);
  void cancelWaits();
  void onBudgetTimer();

  // Silence timers. await*() notes that the exchange now waits on that side (and since when);
  // the timer callbacks find out whether it still does.
  enum class UpstreamWait { None, Head, Bytes };
  UpstreamWait upstreamWait() const;
  bool waitingForClientBody() const;
  void awaitClientBody();
  void awaitResponseHead();
  void awaitUpstreamBytes();
  void armUpstreamTimer(uint64_t deadline_ms);
  void awaitClientWrite();
  void onClientTimer();
  void onSendTimer();
  void onUpstreamTimer();
  // A pooled exchange serves many requests: every per-request member starts from here.
  void resetPerRequestState();

  bool isClient(const HttpStream& stream) const { return &stream == client_; }
  // A body span from `from`'s read block goes into `to`'s output batch, framed for its side
  // (chunked: a size line and CRLF around it). No copy: `to` borrows the block until the write
  // that carries the span ends.
  static void relayBody(HttpStream& from, HttpStream& to, http::BodyFraming framing,
                        const char* at, size_t len);
  http::ParserAction onUpstreamHead(HttpStream& in);
  http::ParserAction onUpstreamBody(HttpStream& in, const char* at, size_t len);
  http::ParserAction onUpstreamMessageEnd();
  void onUpstreamParsed(HttpStream& in, const http::ParseResult& r);
  void onUpstreamData();
  void onUpstreamWritten(int status);
  void onUpstreamEof(HttpStream& in);

  ProxyContext& context_;
  HttpStream* client_ = nullptr;
  ExchangeClient owner_;
  uv::Timer client_timer_;    // timeouts.body while request body bytes are awaited
  uv::Timer send_timer_;      // timeouts.send while a write to the client is pending
  uv::Timer upstream_timer_;  // response_timeout until the head, read_timeout while bytes move
  uv::Timer budget_timer_;    // the route's whole-request `timeout`
  uint64_t client_quiet_since_ = 0;    // waiting for the client's body since (or its last byte)
  uint64_t upstream_quiet_since_ = 0;  // waiting on the upstream since (or its last progress)
  uint64_t send_quiet_since_ = 0;      // a client write pending since (or its last progress)
  size_t client_write_left_ = 0;       // bytes of the pending client write at the last check
  uint64_t request_sent_at_ = 0;       // the whole request was written (response_timeout runs)
  uint64_t upstream_timer_at_ = 0;     // when the upstream timer fires, while it is active
  size_t upstream_write_left_ = 0;     // bytes of a pending upstream write at the last check

  Phase phase_ = Phase::Idle;
  RequestSide request_side_ = RequestSide::Head;
  ResponseSide response_side_ = ResponseSide::None;

  std::shared_ptr<const Snapshot> snapshot_;

  upstream::Lease* upstream_ = nullptr;
  bool upstream_reused_ = false;
  bool retried_ = false;
  bool body_too_large_ = false;     // set inside a parser callback, acted on after it
  ClientEnd client_end_ = ClientEnd::Normal;
  bool response_started_ = false;  // any response byte from upstream
  bool informational_ = false;     // current upstream message is a 1xx we drop
  bool upgrade_declined_ = false;
  bool expect_continue_ = false;
  bool keep_alive_ = true;         // the client connection may carry another request
  bool response_keep_alive_ = true;
  bool head_request_ = false;

  http::BodyFraming request_framing_ = http::BodyFraming::None;
  http::BodyFraming response_framing_ = http::BodyFraming::None;
  uint64_t request_body_bytes_ = 0;
  std::string buffered_body_;  // buffer_request
  std::string head_;           // the head being written (upstream request or client response)
  std::string client_head_;

  // What the observers see of this request (the access log, latency samples, the advisor), and
  // metrics.
  ExchangeRecord record_;
  uint64_t start_ms_ = 0;
  uint64_t queued_at_ms_ = 0;
};

}  // namespace loopguard::proxy
