#include "proxy/exchange.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "proxy/server/client_connection.h"

namespace loopguard::proxy {

using http::BodyFraming;
using upstream::UpstreamErrorKind;

// ---------------------------------------------------------------------------------------------
// Response: upstream -> client

void Exchange::onUpstreamInput() {
  upstream_quiet_since_ = uv_now(context_.loop);
  if (phase_ == Phase::Tunnel) {
    pumpTunnel();
    return;
  }
  parseResponse();
}

void Exchange::parseResponse() {
  if (upstream_ == nullptr || phase_ != Phase::Forwarding) return;
  if (client_writing_ || upgrade_accepted_ || response_side_ == ResponseSide::Complete) return;
  net::Socket& in = upstream_->socket();
  std::string_view input = in.input();
  if (input.empty()) {
    if (upstream_eof_) {
      handleUpstreamEof();
    } else {
      in.readStart();
      awaitUpstreamBytes();
    }
    return;
  }
  response_started_ = true;
  http::ParseResult r = upstream_->parser().execute(input.data(), input.size());
  if (r.status == http::ParseStatus::Error || r.status == http::ParseStatus::HeadTooLarge) {
    in.consume(input.size());
    spdlog::get("upstream")->warn("upstream {}: invalid response: {}", target_name_,
                                  r.reason ? r.reason : "?");
    if (response_side_ == ResponseSide::None) {
      to_client_.clear();
      upstreamFailed(UpstreamErrorKind::Reset, "invalid response from upstream");
    } else {
      abort("invalid response body from upstream");
    }
    return;
  }
  if (r.status == http::ParseStatus::Upgraded) {
    if (!websocket_ || response_side_ == ResponseSide::None) {
      in.consume(input.size());
      upstreamFailed(UpstreamErrorKind::Reset, "unexpected upgrade from upstream");
      return;
    }
    upgrade_accepted_ = true;
  }
  if (!to_client_.empty() && !upstream_buf_lent_) {
    in.lend();
    upstream_buf_lent_ = true;
  }
  in.consume(r.consumed);
  flushClient();
  if (phase_ != Phase::Forwarding || upstream_ == nullptr) return;  // finished meanwhile
  if (!client_writing_ && !upgrade_accepted_ && response_side_ != ResponseSide::Complete) {
    if (upstream_eof_ && in.input().empty()) {
      handleUpstreamEof();
    } else {
      in.readStart();
      awaitUpstreamBytes();
    }
  }
}

int Exchange::onHeadComplete() {
  http::MessageParser& p = upstream_->parser();
  int status = p.statusCode();
  if (status >= 100 && status < 200 && status != 101) {
    informational_ = true;  // 103 Early Hints and friends are dropped; 100 is ours to send
    return 0;
  }
  if (status == 101 && !websocket_) return -1;  // an upgrade nobody asked for
  recordUpstreamSample(status >= 500 ? routing::SampleOutcome::Drop : routing::SampleOutcome::Ok);
  status_ = status;
  response_keep_alive_ = p.keepAlive();

  http::ClientResponseParams params;
  params.status = status;
  params.client_minor = client_->parser().httpMinor();
  params.request_id = request_id_;
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
  if (context_.draining || request_side_ != RequestSide::Complete) keep_alive_ = false;
  params.keep_alive = keep_alive_;
  client_head_.clear();
  http::writeClientResponseHead(client_head_, params, p.headers());
  to_client_.addOwned(client_head_);
  response_side_ = ResponseSide::HeadQueued;
  adviceResponseHead();
  return head_request_ ? http::kSkipBody : 0;
}

void Exchange::onBodyData(const char* at, size_t len) {
  if (informational_) return;
  response_side_ = ResponseSide::Body;
  if (response_framing_ == BodyFraming::Chunked) {
    std::string size_line;
    http::appendHex(size_line, len);
    size_line.append("\r\n");
    to_client_.addFrame(size_line);
    to_client_.addData(at, len);
    to_client_.addFrame("\r\n");
  } else {
    to_client_.addData(at, len);
  }
}

int Exchange::onMessageComplete() {
  if (informational_) {
    informational_ = false;
    return 0;  // the real response follows on the same connection
  }
  if (status_ == 101) return 0;  // llhttp stops with an upgrade next
  response_side_ = ResponseSide::Complete;
  if (response_framing_ == BodyFraming::Chunked) to_client_.addFrame("0\r\n\r\n");
  return http::kPauseParser;
}

void Exchange::flushClient() {
  if (client_writing_) return;
  if (to_client_.empty()) {
    if (phase_ == Phase::Finishing || response_side_ == ResponseSide::Complete) {
      // An early answer to an upload still in progress: the rest of its body is unread.
      if (request_side_ != RequestSide::Complete) keep_alive_ = false;
      finish();
    } else if (upgrade_accepted_) {
      startTunnel();
    }
    return;
  }
  const auto& bufs = to_client_.buffers();
  size_t bytes = to_client_.bytes();
  bytes_sent_ += bytes;
  client_writing_ = true;
  net::Socket::WriteStatus written =
      client_->socket().writeNow(bufs.data(), static_cast<unsigned>(bufs.size()));
  // Pacing is for the reads still to come: none once the response is whole.
  if (upstream_ != nullptr && response_side_ != ResponseSide::Complete) {
    net::paceReads(upstream_->socket(), client_->socket(), written, bytes);
  }
  switch (written) {
    case net::Socket::WriteStatus::Copied:
      // The socket holds what is left: the upstream's read block is free to go back.
      to_client_.clear();
      client_write_copied_ = true;
      if (upstream_buf_lent_) {
        upstream_buf_lent_ = false;
        upstream_->socket().unlend();
      }
      return;
    case net::Socket::WriteStatus::Pending:
      return;
    case net::Socket::WriteStatus::Done:
      onClientWritten(0);  // the kernel took it all: carry on as the callback would
      return;
    case net::Socket::WriteStatus::Error:
      client_writing_ = false;
      to_client_.clear();
      abort("write to client failed");
      return;
  }
}

void Exchange::onClientWritten(int status) {
  client_writing_ = false;
  // After a copied write the batch holds only what was queued behind it (an error answer
  // behind a 100 Continue): that is still to be sent.
  if (!std::exchange(client_write_copied_, false)) to_client_.clear();
  if (upstream_buf_lent_) {
    upstream_buf_lent_ = false;
    if (upstream_ != nullptr) upstream_->socket().unlend();
  }
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
      } else if (upgrade_accepted_) {
        startTunnel();
      } else {
        parseResponse();
      }
      return;
    default:
      return;  // a 100 Continue went out; nothing else to do yet
  }
}

void Exchange::onUpstreamClosed(int status) {
  (void)status;
  if (phase_ == Phase::Tunnel) {
    abort("tunnel closed by upstream");
    return;
  }
  upstream_eof_ = true;
  if (client_writing_ || !upstream_->socket().input().empty()) {
    return;  // parseResponse() deals with it once the input before the close is parsed
  }
  handleUpstreamEof();
}

void Exchange::onUpstreamFailed(UpstreamErrorKind kind, const char* why) {
  if (phase_ == Phase::Tunnel || (response_side_ != ResponseSide::None && bytes_sent_ > 0)) {
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
  client_->socket().readStart();
  pumpTunnel();
}

void Exchange::pumpTunnel() {
  if (phase_ != Phase::Tunnel || upstream_ == nullptr) return;
  net::Socket& down = client_->socket();
  net::Socket& up = upstream_->socket();
  if (!upstream_writing_) {
    std::string_view in = down.input();
    if (!in.empty()) {
      to_upstream_.addData(in.data(), in.size());
      down.lend();
      client_buf_lent_ = true;
      down.consume(in.size());
      flushUpstream();
    } else {
      down.readStart();
    }
  }
  if (phase_ != Phase::Tunnel || upstream_ == nullptr) return;  // ended by that write
  if (!client_writing_) {
    std::string_view in = up.input();
    if (!in.empty()) {
      to_client_.addData(in.data(), in.size());
      up.lend();
      upstream_buf_lent_ = true;
      up.consume(in.size());
      flushClient();
    } else {
      up.readStart();
    }
  }
}

}  // namespace loopguard::proxy
