#include "proxy/session/exchange.h"

#include <spdlog/spdlog.h>

#include <utility>

namespace loopguard::proxy {

using http::BodyFraming;
using upstream::UpstreamErrorKind;

// ---------------------------------------------------------------------------------------------
// Response: upstream -> client

// Raw bytes from the upstream: only a tunnel reads them so.
void Exchange::onUpstreamData() {
  upstream_quiet_since_ = uv_now(context_.loop);
  if (phase_ == Phase::Tunnel) pumpTunnel();
}

// Lets the upstream stream parse on, unless the client still has the last piece to take.
void Exchange::readResponse() {
  if (upstream_ == nullptr || phase_ != Phase::Forwarding) return;
  if (clientBusy() || response_side_ == ResponseSide::Upgraded || response_side_ == ResponseSide::Complete) return;
  HttpStream& in = upstream_->stream();
  if (!in.input().empty()) {
    in.resume();  // the round ends in onStreamParsed()
    return;
  }
  if (in.peerClosed()) {
    handleUpstreamEof();
    return;
  }
  in.resume();  // reads on; parses as bytes come
  awaitUpstreamBytes();
}

// One parse round of the response ended: what the callbacks queued goes to the client.
void Exchange::onUpstreamParsed(HttpStream& in, const http::ParseResult& r) {
  if (upstream_ == nullptr || phase_ != Phase::Forwarding) return;
  response_started_ = true;
  if (r.status == http::ParseStatus::Error || r.status == http::ParseStatus::HeadTooLarge) {
    in.consume(in.input().size());
    spdlog::get("upstream")
        ->warn("upstream {}: invalid response: {}", record_.target_name, r.reason ? r.reason : "?");
    if (response_side_ == ResponseSide::None) {
      client_->discardOutput();
      upstreamFailed(UpstreamErrorKind::Reset, "invalid response from upstream");
    } else {
      abort("invalid response body from upstream");
    }
    return;
  }
  if (r.status == http::ParseStatus::Upgraded) {
    if (!record_.websocket || response_side_ == ResponseSide::None) {
      in.consume(in.input().size());
      upstreamFailed(UpstreamErrorKind::Reset, "unexpected upgrade from upstream");
      return;
    }
    response_side_ = ResponseSide::Upgraded;
  }
  flushClient();
  // With nothing left to write, a whole response ends the exchange right there.
  if (phase_ != Phase::Forwarding || upstream_ == nullptr) return;
  if (clientBusy() || response_side_ == ResponseSide::Upgraded || response_side_ == ResponseSide::Complete) {
    in.pause();  // resumed when the client has taken this piece
    return;
  }
  if (in.peerClosed() && in.input().empty()) {
    handleUpstreamEof();
  } else {
    awaitUpstreamBytes();  // the stream reads on
  }
}

http::ParserAction Exchange::onUpstreamHead(HttpStream& in) {
  http::MessageParser& p = in.parser();
  int status = p.statusCode();
  if (status >= 100 && status < 200 && status != 101) {
    informational_ = true;  // 103 Early Hints and friends are dropped; 100 is ours to send
    return http::ParserAction::Continue;
  }
  if (status == 101 && !record_.websocket) return http::ParserAction::Fail;  // nobody asked for it
  endAttempt(status >= 500 ? routing::SampleOutcome::Drop : routing::SampleOutcome::Ok);
  record_.status = status;
  response_keep_alive_ = p.keepAlive();

  http::ClientResponseParams params;
  params.status = status;
  params.client_minor = client_->parser().httpMinor();
  params.request_id = record_.request_id;
  params.upgrade = status == 101;
  bool no_body = head_request_ || status == 204 || status == 304 || status == 101;
  if (no_body) {
    response_framing_ = BodyFraming::None;
    if (head_request_ && p.hasContentLength()) {
      params.framing = BodyFraming::ContentLength;  // what a GET would have carried
      params.content_length = p.contentLength();
    }
  } else if (p.hasContentLength() && !p.chunked()) {
    response_framing_ = BodyFraming::ContentLength;
    params.framing = BodyFraming::ContentLength;
    params.content_length = p.contentLength();
  } else if (params.client_minor == 1) {
    response_framing_ = BodyFraming::Chunked;
    params.framing = BodyFraming::Chunked;
  } else {
    response_framing_ = BodyFraming::UntilClose;  // HTTP/1.0 client: the close ends the body
    keep_alive_ = false;
  }
  if (context_.draining || !requestRead()) keep_alive_ = false;
  params.keep_alive = keep_alive_;
  client_head_.clear();
  http::writeClientResponseHead(client_head_, params, p.headers());
  toClient().addOwned(client_head_);
  response_side_ = ResponseSide::HeadQueued;
  snapshot_->observers.responseHead(record_, response_framing_ == BodyFraming::Chunked ||
                                                 response_framing_ == BodyFraming::UntilClose);
  return head_request_ ? http::ParserAction::SkipBody : http::ParserAction::Continue;
}

http::ParserAction Exchange::onUpstreamBody(HttpStream& in, const char* at, size_t len) {
  if (informational_) return http::ParserAction::Continue;
  response_side_ = ResponseSide::Body;
  relayBody(in, *client_, response_framing_, at, len);
  return http::ParserAction::Continue;
}

http::ParserAction Exchange::onUpstreamMessageEnd() {
  if (informational_) {
    informational_ = false;
    return http::ParserAction::Continue;  // the real response follows on the same connection
  }
  if (record_.status == 101)
    return http::ParserAction::Continue;  // llhttp stops with an upgrade next
  response_side_ = ResponseSide::Complete;
  if (response_framing_ == BodyFraming::Chunked) toClient().addFrame("0\r\n\r\n");
  return http::ParserAction::Pause;
}

void Exchange::flushClient() {
  if (clientBusy()) return;
  if (toClient().empty()) {
    if (phase_ == Phase::Finishing || response_side_ == ResponseSide::Complete) {
      // An early answer to an upload still in progress: the rest of its body is unread.
      if (!requestRead()) keep_alive_ = false;
      finish();
    } else if (response_side_ == ResponseSide::Upgraded) {
      startTunnel();
    }
    return;
  }
  record_.bytes += toClient().bytes();
  // Pacing is for the reads still to come: none once the response is whole.
  bool more = upstream_ != nullptr && response_side_ != ResponseSide::Complete;
  client_->flush(more ? &upstream_->stream() : nullptr);  // completes in onClientWritten
  if (clientBusy()) awaitClientWrite();
}

void Exchange::onClientWritten(int status) {
  if (phase_ == Phase::Idle) return;
  if (status < 0) {
    abort("client went away");
    return;
  }
  switch (phase_) {
    case Phase::Finishing:
      flushClient();  // anything queued behind a 100 Continue, then finish()
      return;
    case Phase::Tunnel:
      pumpTunnel();
      return;
    case Phase::Forwarding:
      if (response_side_ == ResponseSide::Complete) {
        flushClient();
      } else if (response_side_ == ResponseSide::Upgraded) {
        startTunnel();
      } else {
        readResponse();
      }
      return;
    default:
      return;  // a 100 Continue went out; nothing else to do yet
  }
}

void Exchange::onUpstreamEof(HttpStream& in) {
  if (phase_ == Phase::Tunnel) {
    abort("tunnel closed by upstream");
    return;
  }
  if (clientBusy() || !in.input().empty()) {
    return;  // readResponse() deals with it once the input before the close is parsed
  }
  handleUpstreamEof();
}

void Exchange::onUpstreamFailed(UpstreamErrorKind kind, const char* why) {
  if (phase_ == Phase::Tunnel || (response_side_ != ResponseSide::None && record_.bytes > 0)) {
    abort(why);
    return;
  }
  upstreamFailed(kind, why);
}

void Exchange::handleUpstreamEof() {
  if (upstream_ == nullptr) return;
  http::MessageParser& p = upstream_->parser();
  response_keep_alive_ = false;
  if (response_side_ != ResponseSide::None && p.inMessage() && p.needsEof()) {
    // A body delimited by the close: this close is its end.
    p.finish();
    flushClient();
    return;
  }
  if (response_side_ == ResponseSide::None) {
    upstreamFailed(UpstreamErrorKind::Reset, "upstream closed the connection before responding");
  } else {
    abort("upstream closed the connection mid-response");
  }
}

// ---------------------------------------------------------------------------------------------
// Tunnel (after a 101)

void Exchange::startTunnel() {
  phase_ = Phase::Tunnel;
  upstream_->beginTunnel();
  client_->setRaw();
  pumpTunnel();
}

void Exchange::pumpTunnel() {
  if (phase_ != Phase::Tunnel || upstream_ == nullptr) return;
  HttpStream& up = upstream_->stream();
  if (!upstreamWriting()) {
    std::string_view in = client_->input();
    if (!in.empty()) {
      toUpstream().addData(in.data(), in.size());
      up.borrow(*client_);
      client_->consume(in.size());
      flushUpstream();  // completes from the loop, never from here
    } else {
      client_->readStart();
    }
  }
  if (!clientBusy()) {
    std::string_view in = up.input();
    if (!in.empty()) {
      toClient().addData(in.data(), in.size());
      client_->borrow(up);
      up.consume(in.size());
      flushClient();
    } else {
      up.readStart();
    }
  }
}

}  // namespace loopguard::proxy
