#include "proxy/session/exchange.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace loopguard::proxy {

using http::BodyFraming;
using routing::Admission;
using upstream::AcquireResult;
using upstream::UpstreamErrorKind;

namespace {

bool validRequestId(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  for (char c : id) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

bool idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
         method == "DELETE" || method == "TRACE";
}

constexpr uint64_t kMaxResponseHeadBytes = 64 * 1024;
// A buffered body of known length up to this is given its whole buffer at once: one allocation,
// no copies as it grows, and (for the larger ones, which the allocator maps) memory that counts
// only as the bytes arrive, so an upload that stalls holds what it sent, not twice that.
constexpr uint64_t kReserveBodyBytes = 1024 * 1024;
// Buffers larger than this are not kept for the next request (see holdsLargeBuffers()).
constexpr size_t kKeptBufferBytes = 16 * 1024;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Set-up

Exchange::Exchange(ProxyContext& context)
    : context_(context),
      client_timer_(context.loop, this, &uv::bindTimer<Exchange, &Exchange::onClientTimer>),
      send_timer_(context.loop, this, &uv::bindTimer<Exchange, &Exchange::onSendTimer>),
      upstream_timer_(context.loop, this, &uv::bindTimer<Exchange, &Exchange::onUpstreamTimer>),
      budget_timer_(context.loop, this, &uv::bindTimer<Exchange, &Exchange::onBudgetTimer>) {}

Exchange::~Exchange() = default;

void ExchangeRecord::clear() {
  request_id.clear();
  method.clear();
  target_name.clear();
  error.clear();
  client = {};
  request = nullptr;
  route = nullptr;
  runtime = nullptr;
  websocket = false;
  start_ns = 0;
  queue_start_ns = 0;
  admitted_ns = 0;
  upstream_sent_us = 0;
  status = 0;
  bytes = 0;
  overload = "";
  advice_ticket = 0;
  worker = {};
}

void Exchange::resetPerRequestState() {
  phase_ = Phase::Idle;
  request_side_ = RequestSide::Head;
  response_side_ = ResponseSide::None;
  record_.clear();
  upstream_ = nullptr;
  upstream_reused_ = false;
  retried_ = false;
  body_too_large_ = false;
  client_end_ = ClientEnd::Normal;
  response_started_ = false;
  informational_ = false;
  upgrade_declined_ = false;
  expect_continue_ = false;
  keep_alive_ = true;
  response_keep_alive_ = true;
  head_request_ = false;
  request_framing_ = BodyFraming::None;
  response_framing_ = BodyFraming::None;
  request_body_bytes_ = 0;
  buffered_body_.clear();
  start_ms_ = 0;
  queued_at_ms_ = 0;
}

void Exchange::start(bool has_body) {
  http::MessageParser& p = client_->parser();
  resetPerRequestState();
  phase_ = Phase::Routing;  // every path below moves on from here
  start_ms_ = uv_now(context_.loop);
  record_.start_ns = uv_hrtime();
  request_side_ = has_body ? RequestSide::Body : RequestSide::Complete;
  record_.method.assign(p.method());
  record_.request = &p;
  record_.client = *owner_.peer_ip;
  keep_alive_ = p.keepAlive();
  snapshot_ = context_.snapshot;
  ++context_.counters.requests_total;

  bool has_id = false;
  std::string_view given_id = p.headers().get(http::HeaderId::XRequestId, &has_id);
  if (has_id && validRequestId(given_id)) {
    record_.request_id.assign(given_id);
  } else {
    context_.ids.next(record_.request_id);
  }

  http::RequestFacts facts = http::requestFactsOf(p);
  if (http::HeadProblem problem = http::checkRequestHead(facts, p.headers())) {
    keep_alive_ = false;
    respondError(problem.status, problem.message);
    return;
  }
  if (!route()) return;

  const config::Route& r = *record_.route->route;
  if (r.timeout.count() > 0) budget_timer_.start(static_cast<uint64_t>(r.timeout.count()));
  if (request_side_ == RequestSide::Body && r.buffer_request) {
    phase_ = Phase::BufferingBody;
    buffered_body_.clear();
    if (p.hasContentLength()) {
      buffered_body_.reserve(std::min(std::min(p.contentLength(), kReserveBodyBytes),
                                      uint64_t{r.buffer_limit}));
    }
    // Each read is copied out and its block given back at once: large reads pin nothing.
    client_->socket().setReadLimit(net::BufferPool::kLargeBlock);
    if (expect_continue_) {
      toClient().addFrame(kContinue);
      flushClient();
    }
    pumpRequestBody();
    return;
  }
  admit();
}

// Matches a route and settles the request's framing. False when it already answered.
bool Exchange::route() {
  http::MessageParser& p = client_->parser();
  const config::Config& cfg = snapshot_->config();
  routing::RoutingPath path;
  if (const char* why = path.assign(p.target())) {
    keep_alive_ = false;
    respondError(400, why);
    return false;
  }
  routing::RequestView view{p.method(), path.normalized(),
                            http::requestHost(p.target(), p.headers()), path.appPath()};
  record_.route = snapshot_->table.match(view);
  if (record_.route == nullptr) {
    if (!requestRead()) keep_alive_ = false;
    respondError(404, "no route matches the request");
    return false;
  }
  record_.runtime = &snapshot_->routes[record_.route->index];
  // Auto-offload: an endpoint the advisor found blocking the app's loop is served by the
  // route's pool instead, as a pool route would serve it (its bounds, the body buffered).
  if (const OffloadedRoute* moved = snapshot_->offloaded(*record_.route, p.method(), p.target())) {
    record_.route = &moved->compiled;
    record_.runtime = &moved->runtime;
  }

  if (p.chunked()) {
    request_framing_ = BodyFraming::Chunked;
  } else if (p.hasContentLength()) {
    request_framing_ = BodyFraming::ContentLength;
  } else {
    request_framing_ = BodyFraming::None;
  }
  uint64_t max_body = cfg.limits.max_body_bytes;
  if (max_body > 0 && p.hasContentLength() && p.contentLength() > max_body) {
    keep_alive_ = false;
    respondError(413, "request body too large");
    return false;
  }
  if (record_.route->route->buffer_request && p.hasContentLength() &&
      p.contentLength() > record_.route->route->buffer_limit) {
    keep_alive_ = false;
    respondError(413,
                 "request body larger than the route's buffer_limit (default 16MiB): raise "
                 "buffer_limit on this route, or set buffer_request: false to stream the body");
    return false;
  }

  bool has_expect = false;
  std::string_view expect = p.headers().get(http::HeaderId::Expect, &has_expect);
  expect_continue_ = false;
  if (has_expect) {
    if (!http::equalsIgnoreCase(expect, "100-continue")) {
      keep_alive_ = false;
      respondError(417, "unsupported Expect header");
      return false;
    }
    // We answer 100 Continue ourselves when we are ready for the body; HTTP/1.0 has no 100.
    expect_continue_ = p.httpMinor() == 1 && request_side_ == RequestSide::Body;
  }

  head_request_ = p.methodId() == HTTP_HEAD;
  record_.websocket = false;
  upgrade_declined_ = false;
  bool has_upgrade = false;
  std::string_view upgrade = p.headers().get(http::HeaderId::Upgrade, &has_upgrade);
  if (has_upgrade) {
    if (p.upgradeRequested() && p.methodId() == HTTP_GET &&
        http::equalsIgnoreCase(upgrade, "websocket")) {
      record_.websocket = true;
    } else {
      // Other protocols (h2c...) are not passed on. The parser stopped for the upgrade, so this
      // connection ends after the response.
      upgrade_declined_ = p.upgradeRequested();
      if (upgrade_declined_) keep_alive_ = false;
    }
  }
  return true;
}

void Exchange::admit() {
  record_.queue_start_ns = uv_hrtime();
  if (const char* reason = record_.runtime->target->unavailableReason()) {
    respondError(503, "no worker is available for this route", reason);
    return;
  }
  phase_ = Phase::Queued;
  switch (record_.runtime->limiter->limiter().admit(*this)) {
    case Admission::Admitted:
      record_.admitted_ns = record_.queue_start_ns;
      record_.runtime->metrics->queue_wait.record(0);
      acquireTarget();
      return;
    case Admission::Queued:
      queued_at_ms_ = uv_now(context_.loop);
      return;
    case Admission::QueueFull:
      respondError(record_.route->route->limits.overflow_status, "route queue is full",
                   "queue_full");
      return;
  }
}

void Exchange::onAdmitted() {
  record_.admitted_ns = uv_hrtime();
  record_.runtime->metrics->queue_wait.record(
      static_cast<double>(uv_now(context_.loop) - queued_at_ms_) / 1000.0);
  acquireTarget();
}

void Exchange::onQueueTimeout() {
  recordQueueRefusal();
  if (const char* reason = record_.runtime->target->unavailableReason()) {
    respondError(503, "no worker is available for this route", reason);
    return;
  }
  const char* why = record_.runtime->target->queueHoldReason();
  respondError(record_.route->route->limits.overflow_status,
               why != nullptr ? why : "timed out waiting in the route queue", "queue_timeout");
}

void Exchange::onEvicted() {
  recordQueueRefusal();
  respondError(record_.route->route->limits.overflow_status,
               "route queue is full: a newer request took this one's place", "queue_evicted");
}

void Exchange::recordQueueRefusal() {
  record_.runtime->metrics->queue_refused_wait.record(
      static_cast<double>(uv_now(context_.loop) - queued_at_ms_) / 1000.0);
}

void Exchange::endAttempt(routing::SampleOutcome outcome) {
  // Once per attempt, only once the whole request was upstream.
  if (record_.upstream_sent_us == 0) return;
  snapshot_->observers.attemptEnded(record_, outcome);
  record_.upstream_sent_us = 0;
}

void Exchange::acquireTarget() {
  phase_ = Phase::Connecting;
  upstream::AcquireOptions options;
  options.fresh = retried_;
  options.route = record_.route->route->name;
  options.request_id = record_.request_id;
  AcquireResult r = record_.runtime->target->acquire(*this, options);
  switch (r.kind) {
    case AcquireResult::Kind::Ready:
      onTargetReady(r.lease, true);
      return;
    case AcquireResult::Kind::Failed:
      upstreamFailed(UpstreamErrorKind::Connect, r.why);
      return;
    case AcquireResult::Kind::Pending:
      return;
  }
}

void Exchange::onTargetReady(upstream::Lease* connection, bool reused) {
  upstream_ = connection;
  upstream_reused_ = reused;
  record_.target_name = connection->peerName();
  snapshot_->observers.upstreamAttached(record_, *connection);
  connection->attach(*this, kMaxResponseHeadBytes);
  connection->countRequest();
  phase_ = Phase::Forwarding;
  response_started_ = false;
  informational_ = false;
  // A second attempt (a retry) sends the request again.
  if (request_side_ == RequestSide::Sent) request_side_ = RequestSide::Complete;
  // The response is parsed as it comes, even while the request is still going up (an app may
  // answer an upload early). Nothing is there yet: a pooled connection with input is dropped.
  connection->stream().resume();
  sendRequestHead();
}

void Exchange::onTargetFailed(UpstreamErrorKind kind, const char* why) {
  // A worker pool that lost every worker while this request waited for one: an overload
  // refusal (503 no_workers), like a queued request, not an upstream error.
  if (const char* reason = record_.runtime->target->unavailableReason()) {
    respondError(503, "no worker is available for this route", reason);
    return;
  }
  upstreamFailed(kind, why);
}

// ---------------------------------------------------------------------------------------------
// Ends

void Exchange::upstreamFailed(UpstreamErrorKind kind, const char* why) {
  // Connect failures are counted by the target as it tries each endpoint.
  if (kind != UpstreamErrorKind::Connect) record_.runtime->target->recordError(kind);
  bool retry = kind == UpstreamErrorKind::Reset && upstream_reused_ && !response_started_ &&
               !retried_ && idempotent(record_.method) &&
               (request_framing_ == BodyFraming::None || record_.route->route->buffer_request) &&
               upstream_ != nullptr && record_.runtime->target->retryable(upstream_);
  if (retry) {
    // The pooled connection was closed by the app as we reused it: nothing reached the app's
    // handler, so one fresh attempt is safe for an idempotent request.
    retried_ = true;
    record_.upstream_sent_us = 0;  // a stale keep-alive connection, not a sign of overload
    releaseUpstream(false);
    acquireTarget();
    return;
  }
  if (kind != UpstreamErrorKind::Connect) endAttempt(routing::SampleOutcome::Drop);
  // Per-request detail at debug: the access line carries it (status, error, target), and the
  // cause is logged once where it happened (the cluster's connect, the pool's worker).
  spdlog::get("upstream")
      ->debug("request {}: upstream {} failed ({}): {}", record_.request_id,
              record_.target_name.empty() ? record_.runtime->target->name() : record_.target_name,
              upstream::errorKindName(kind), why);
  if (kind == UpstreamErrorKind::Timeout) {
    respondError(504, "upstream timed out");
  } else {
    respondError(502, why);
  }
}

void Exchange::respondError(int status, const char* message, const char* overload_reason) {
  if (response_side_ != ResponseSide::None && record_.bytes > 0) {
    abort(message);  // the client already has part of another response
    return;
  }
  cancelWaits();
  // What was queued for the client and not sent goes (and with it any borrow of the upstream's
  // read block); a write in flight (a 100 Continue) completes first.
  client_->discardOutput();
  releaseUpstream(false);
  // The answer is ours from here on: the next request of the route need not wait for it to be
  // written (a client that does not read could otherwise keep the slot).
  releaseSlot();
  response_side_ = ResponseSide::None;
  if (!requestRead()) keep_alive_ = false;
  record_.status = status;
  record_.error.assign(message);
  record_.overload = overload_reason;
  if (*overload_reason != '\0' && record_.runtime != nullptr) {
    record_.runtime->metrics->countRejection(overload_reason, uv_now(context_.loop));
  }
  http::ErrorResponse e;
  e.status = status;
  e.error = message;
  e.route =
      record_.route != nullptr ? std::string_view(record_.route->route->name) : std::string_view();
  e.request_id = record_.request_id;
  e.overload_reason = overload_reason;
  if (record_.route != nullptr && *overload_reason != '\0') {
    uint64_t wait_s =
        (static_cast<uint64_t>(record_.route->route->limits.queue_timeout.count()) + 999) / 1000;
    e.retry_after_seconds = static_cast<uint32_t>(wait_s == 0 ? 1 : wait_s);
  }
  e.keep_alive = keep_alive_ && !context_.draining;
  keep_alive_ = e.keep_alive;
  e.client_minor = client_->parser().httpMinor() == 0 ? 0 : 1;
  client_head_.clear();
  http::writeErrorResponse(client_head_, e);
  toClient().addOwned(client_head_);
  phase_ = Phase::Finishing;
  flushClient();
}

void Exchange::abort(const char* why) {
  if (phase_ == Phase::Idle) return;
  spdlog::get("proxy")->debug("request {}: aborted: {}", record_.request_id, why);
  if (record_.status == 0)
    record_.status = 499;  // nginx's "client closed request", for the access log
  if (record_.error.empty()) record_.error.assign(why);
  keep_alive_ = false;
  finish(true);
}

void Exchange::cancelWaits() {
  // The phase says what is awaited; both cancels are no-ops once the answer has come.
  if (phase_ == Phase::Queued) record_.runtime->limiter->limiter().cancel(*this);
  if (phase_ == Phase::Connecting) record_.runtime->target->cancel(*this);
  client_timer_.stop();
  upstream_timer_.stop();
}

void Exchange::releaseSlot() {
  if (!slotHeld()) return;
  record_.runtime->limiter->limiter().release();
}

void Exchange::releaseUpstream(bool reusable) {
  if (upstream_ == nullptr) return;
  upstream::Lease* c = std::exchange(upstream_, nullptr);
  // Its stream stops calling this exchange. A write still in flight (borrowing the client's
  // read block) ends with the connection, which the target closes when it is not reusable.
  c->detach();
  c->stream().socket().setReadLimit(net::BufferPool::kSmallBlock);  // its next response starts small
  record_.runtime->target->release(c, reusable);           // the target closes it when not reusable
}

void Exchange::finish(bool aborted) {
  // A client write the kernel took whole, its completion still queued, is over already: only a
  // busy one is still in flight.
  bool client_writing = clientBusy();
  cancelWaits();
  budget_timer_.stop();
  send_timer_.stop();  // a write still pending dies with the connection, which closes
  bool reusable = response_side_ == ResponseSide::Complete && request_side_ == RequestSide::Sent &&
                  response_keep_alive_ && phase_ != Phase::Tunnel && !client_writing &&
                  upstream_ != nullptr && upstream_->stream().socket().input().empty();
  releaseUpstream(reusable);
  releaseSlot();
  client_->socket().setReadLimit(net::BufferPool::kSmallBlock);
  recordMetrics();
  snapshot_->observers.finished(record_);
  bool keep_alive = keep_alive_ && requestRead() && !context_.draining &&
                    response_framing_ != BodyFraming::UntilClose && !client_writing;
  // A client may still be sending what the proxy will never read (a body refused for its size,
  // pipelined requests after a "Connection: close"): closing now would reset the connection and
  // could destroy the answer in the client's receive buffer, so the connection lingers. Not
  // after a cut response, a dead client or a body timeout: there nothing more is coming.
  AfterExchange after = client_end_ == ClientEnd::Stalled ? AfterExchange::Reset : AfterExchange::Close;
  if (keep_alive) {
    after = AfterExchange::KeepAlive;
  } else if (!aborted && client_end_ != ClientEnd::TimedOut && !client_writing &&
             (!requestRead() || !client_->input().empty())) {
    after = AfterExchange::Linger;
  }
  phase_ = Phase::Idle;
  client_->discardOutput();
  snapshot_.reset();
  record_.route = nullptr;
  record_.runtime = nullptr;
  retried_ = false;
  response_framing_ = BodyFraming::None;
  request_framing_ = BodyFraming::None;
  if (buffered_body_.capacity() > 4 * kKeptBufferBytes) std::string().swap(buffered_body_);
  record_.target_name.clear();
  owner_.done(owner_.connection, after);
}

bool Exchange::holdsLargeBuffers() const {
  return buffered_body_.capacity() > kKeptBufferBytes || head_.capacity() > kKeptBufferBytes ||
         client_head_.capacity() > kKeptBufferBytes;
}

void Exchange::onClientGone() {
  if (phase_ == Phase::Idle) return;
  abort("client closed the connection");
}

// ---------------------------------------------------------------------------------------------
// Stream events: each says which of the two streams it is about.

void Exchange::relayBody(HttpStream& from, HttpStream& to, BodyFraming framing, const char* at,
                         size_t len) {
  to.borrow(from);
  OutputBatch& out = to.out();
  if (framing == BodyFraming::Chunked) {
    std::string size_line;
    http::appendHex(size_line, len);
    size_line.append("\r\n");
    out.addFrame(size_line);
    out.addData(at, len);
    out.addFrame("\r\n");
  } else {
    out.addData(at, len);
  }
}

http::ParserAction Exchange::onStreamHead(HttpStream& stream) {
  // The client's stream stops after the request's message: a pipelined head waits for the next
  // exchange.
  return isClient(stream) ? http::ParserAction::Fail : onUpstreamHead(stream);
}

http::ParserAction Exchange::onStreamBody(HttpStream& stream, const char* at, size_t len) {
  return isClient(stream) ? onRequestBody(at, len) : onUpstreamBody(stream, at, len);
}

http::ParserAction Exchange::onStreamMessageEnd(HttpStream& stream) {
  if (!isClient(stream)) return onUpstreamMessageEnd();
  onRequestComplete();
  return http::ParserAction::Pause;
}

void Exchange::onStreamParsed(HttpStream& stream, const http::ParseResult& result) {
  if (isClient(stream)) {
    onRequestParsed(result);
  } else {
    onUpstreamParsed(stream, result);
  }
}

void Exchange::onStreamData(HttpStream& stream) {
  if (!isClient(stream)) {
    onUpstreamData();
  } else if (phase_ == Phase::Tunnel) {
    pumpTunnel();
  }
}

void Exchange::onStreamWritten(HttpStream& stream, int status) {
  if (isClient(stream)) {
    onClientWritten(status);
  } else {
    onUpstreamWritten(status);
  }
}

void Exchange::onStreamEof(HttpStream& stream, int) {
  if (isClient(stream)) {
    onClientGone();
  } else {
    onUpstreamEof(stream);
  }
}

void Exchange::onBudgetTimer() {
  if (phase_ == Phase::Idle || phase_ == Phase::Finishing) return;
  if (response_side_ == ResponseSide::None || record_.bytes == 0) {
    respondError(504, "route timeout exceeded");
  } else {
    abort("route timeout exceeded mid-response");
  }
}

void Exchange::recordMetrics() {
  metrics::RouteMetrics& m =
      record_.runtime != nullptr ? *record_.runtime->metrics : context_.unrouted;
  uint64_t now = uv_now(context_.loop);
  m.recordResponse(record_.status, static_cast<double>(now - start_ms_) / 1000.0, now);
}

}  // namespace loopguard::proxy
