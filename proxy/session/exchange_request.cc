#include "proxy/session/exchange.h"

#include <spdlog/spdlog.h>

namespace loopguard::proxy {

using http::BodyFraming;
using upstream::UpstreamErrorKind;

// ---------------------------------------------------------------------------------------------
// Request: client -> upstream

void Exchange::sendRequestHead() {
  http::MessageParser& p = client_->parser();
  http::UpstreamRequestParams params;
  params.method = p.method();
  params.target = p.target();
  params.client_ip = *owner_.peer_ip;
  params.request_id = record_.request_id;
  params.fallback_host = record_.route->route->target;
  params.websocket_upgrade = record_.websocket;
  bool buffered = record_.route->route->buffer_request && request_framing_ != BodyFraming::None;
  if (buffered) {
    params.framing = BodyFraming::ContentLength;
    params.content_length = buffered_body_.size();
  } else {
    params.framing = request_framing_;
    params.content_length = p.contentLength();
  }
  head_.clear();
  http::writeUpstreamRequestHead(head_, params, p.headers());
  OutputBatch& out = toUpstream();
  out.clear();
  out.addOwned(head_);
  if (buffered) {
    out.addOwned(buffered_body_);
  } else if (request_side_ == RequestSide::Body) {
    if (expect_continue_ && request_body_bytes_ == 0 && client_->input().empty()) {
      toClient().addFrame(kContinue);
      flushClient();
    }
    pumpRequestBody();  // sends the head along with whatever body is already here
    return;
  }
  flushUpstream();
}

// Lets the client stream parse the body on, unless the upstream still has the last piece to
// take (then its write's completion resumes it).
void Exchange::pumpRequestBody() {
  if (request_side_ != RequestSide::Body) return;
  if (phase_ == Phase::Forwarding && upstreamWriting()) return;
  if (phase_ != Phase::Forwarding && phase_ != Phase::BufferingBody) return;
  if (client_->input().empty()) {
    awaitClientBody();
    if (phase_ == Phase::Forwarding) {
      flushUpstream();  // the head, if nothing else
      if (upstreamWriting()) return;  // its completion resumes the body
    }
  }
  // Parses what is there and reads on; each round ends in onRequestParsed, which pauses the
  // stream again while the upstream has a piece to take: body spans are only ever added to a
  // batch no write is using.
  client_->resume();
}

// One parse round of the request body ended: what the callbacks queued goes upstream.
void Exchange::onRequestParsed(const http::ParseResult& r) {
  if (phase_ != Phase::Forwarding && phase_ != Phase::BufferingBody) return;
  if (r.status == http::ParseStatus::Error || r.status == http::ParseStatus::HeadTooLarge) {
    client_->consume(client_->input().size());
    keep_alive_ = false;
    respondError(400, r.reason ? r.reason : "malformed chunked body");
    return;
  }
  if (body_too_large_) {
    body_too_large_ = false;
    keep_alive_ = false;
    respondError(413, "request body too large");
    return;
  }
  if (phase_ == Phase::BufferingBody) {
    if (requestRead()) {
      client_timer_.stop();
      // What follows waits unread: keep it small.
      client_->socket().setReadLimit(net::BufferPool::kSmallBlock);
      admit();
    } else {
      awaitClientBody();
    }
    return;
  }
  flushUpstream();
  if (request_side_ != RequestSide::Body) return;
  if (upstreamWriting()) {
    client_->pause();  // backpressure: resumed when the upstream has taken this piece
  } else if (client_->input().empty()) {
    awaitClientBody();
  }
}

http::ParserAction Exchange::onRequestBody(const char* at, size_t len) {
  request_body_bytes_ += len;
  uint64_t max_body = snapshot_->config().limits.max_body_bytes;
  if ((max_body > 0 && request_body_bytes_ > max_body) || body_too_large_) {
    body_too_large_ = true;  // answered (413) when the round ends
    return http::ParserAction::Continue;
  }
  if (phase_ == Phase::BufferingBody) {
    if (buffered_body_.size() + len > record_.route->route->buffer_limit) {
      body_too_large_ = true;
      return http::ParserAction::Continue;
    }
    buffered_body_.append(at, len);
    return http::ParserAction::Continue;
  }
  relayBody(*client_, upstream_->stream(), request_framing_, at, len);
  return http::ParserAction::Continue;
}

void Exchange::onRequestComplete() {
  request_side_ = RequestSide::Complete;
  if (phase_ == Phase::Forwarding && request_framing_ == BodyFraming::Chunked) {
    toUpstream().addFrame("0\r\n\r\n");
  }
}

void Exchange::flushUpstream() {
  if (upstream_ == nullptr) return;
  HttpStream& up = upstream_->stream();
  if (up.busy()) return;
  if (up.out().empty()) {
    if (requestRead()) {
      snapshot_->observers.requestSent(record_, *upstream_);
      noteRequestSent();
    }
    return;
  }
  // Upstream time starts as the end of the request is handed over. Stamped before the write: a
  // stamp after it is late whenever the write's wake-up of the app preempts us, and a sample
  // shorter than the app's work would pull the latency baseline down.
  if (requestRead()) record_.upstream_sent_us = uv_hrtime() / 1000;
  if (requestRead()) {
    snapshot_->observers.requestSent(record_, *upstream_);  // the write with its last bytes
  }
  // The client's reads are paced to this write while more of its bytes are to come.
  up.flush(!requestRead() || phase_ == Phase::Tunnel ? client_ : nullptr);
  awaitUpstreamBytes();  // until the upstream takes it (read_timeout)
}

void Exchange::noteRequestSent() {
  request_side_ = RequestSide::Sent;
  if (record_.upstream_sent_us == 0) record_.upstream_sent_us = uv_hrtime() / 1000;
  upstream_->markRequestSent();
  awaitResponseHead();
}

// The upstream stream's write completed (always from the loop, never inside flushUpstream).
void Exchange::onUpstreamWritten(int status) {
  upstream_quiet_since_ = uv_now(context_.loop);
  if (status < 0) {
    upstreamFailed(UpstreamErrorKind::Reset, "upstream closed while receiving the request");
    return;
  }
  if (phase_ == Phase::Tunnel) {
    pumpTunnel();
    return;
  }
  if (requestRead()) {
    if (request_side_ != RequestSide::Sent) noteRequestSent();
    return;
  }
  pumpRequestBody();
}

}  // namespace loopguard::proxy
