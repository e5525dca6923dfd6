#include "proxy/exchange.h"

#include <spdlog/spdlog.h>

#include "proxy/server/client_connection.h"

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
  params.client_ip = client_->peerIp();
  params.request_id = request_id_;
  params.fallback_host = route_->route->target;
  params.websocket_upgrade = websocket_;
  bool buffered = route_->route->buffer_request && request_framing_ != BodyFraming::None;
  if (buffered) {
    params.framing = BodyFraming::ContentLength;
    params.content_length = buffered_body_.size();
  } else {
    params.framing = request_framing_;
    params.content_length = p.contentLength();
  }
  head_.clear();
  http::writeUpstreamRequestHead(head_, params, p.headers());
  to_upstream_.clear();
  to_upstream_.addOwned(head_);
  if (buffered) {
    to_upstream_.addOwned(buffered_body_);
  } else if (request_side_ == RequestSide::Body) {
    if (expect_continue_ && request_body_bytes_ == 0 && client_->socket().input().empty()) {
      to_client_.addFrame(kContinue);
      flushClient();
    }
    pumpRequestBody();  // sends the head along with whatever body is already here
    return;
  }
  flushUpstream();
}

void Exchange::pumpRequestBody() {
  if (request_side_ != RequestSide::Body) return;
  if (phase_ == Phase::Forwarding && upstream_writing_) return;
  if (phase_ != Phase::Forwarding && phase_ != Phase::BufferingBody) return;
  net::Socket& in = client_->socket();
  std::string_view input = in.input();
  if (input.empty()) {
    in.readStart();
    awaitClientBody();
    if (phase_ == Phase::Forwarding) flushUpstream();  // the head, if nothing else
    return;
  }
  http::MessageParser& p = client_->parser();
  p.resume();
  http::ParseResult r = p.execute(input.data(), input.size());
  bool framing_ok = r.status != http::ParseStatus::Error &&
                    r.status != http::ParseStatus::HeadTooLarge &&
                    (request_framing_ != BodyFraming::Chunked ||
                     chunked_validator_.feed(input.data(), r.consumed));
  if (!framing_ok) {
    in.consume(input.size());
    to_upstream_.clear();
    keep_alive_ = false;
    respondError(400, r.reason ? r.reason : "malformed chunked body");
    return;
  }
  bool lend = phase_ == Phase::Forwarding && !to_upstream_.empty();
  if (lend && !client_buf_lent_) {
    in.lend();
    client_buf_lent_ = true;
  }
  in.consume(r.consumed);
  if (body_too_large_) {
    body_too_large_ = false;
    keep_alive_ = false;
    respondError(413, "request body too large");
    return;
  }
  if (phase_ == Phase::BufferingBody) {
    if (request_side_ == RequestSide::Complete) {
      client_timer_.stop();
      in.setReadLimit(net::BufferPool::kSmallBlock);  // what follows waits unread: keep it small
      admit();
    } else {
      in.readStart();
      awaitClientBody();
    }
    return;
  }
  flushUpstream();
  if (phase_ != Phase::Forwarding) return;  // a synchronous write may have ended the exchange
  if (request_side_ == RequestSide::Body && in.input().empty()) {
    in.readStart();
    awaitClientBody();
  }
}

void Exchange::onRequestBody(const char* at, size_t len) {
  request_body_bytes_ += len;
  uint64_t max_body = snapshot_->config().limits.max_body_bytes;
  if ((max_body > 0 && request_body_bytes_ > max_body) || body_too_large_) {
    body_too_large_ = true;
    return;
  }
  if (phase_ == Phase::BufferingBody) {
    if (buffered_body_.size() + len > route_->route->buffer_limit) {
      body_too_large_ = true;
      return;
    }
    buffered_body_.append(at, len);
    return;
  }
  if (request_framing_ == BodyFraming::Chunked) {
    std::string size_line;
    http::appendHex(size_line, len);
    size_line.append("\r\n");
    to_upstream_.addFrame(size_line);
    to_upstream_.addData(at, len);
    to_upstream_.addFrame("\r\n");
  } else {
    to_upstream_.addData(at, len);
  }
}

void Exchange::onRequestComplete() {
  request_side_ = RequestSide::Complete;
  if (phase_ == Phase::Forwarding && request_framing_ == BodyFraming::Chunked) {
    to_upstream_.addFrame("0\r\n\r\n");
  }
}

void Exchange::flushUpstream() {
  if (upstream_ == nullptr || upstream_writing_) return;
  if (to_upstream_.empty()) {
    if (request_side_ == RequestSide::Complete && !request_sent_) {
      request_sent_ = true;
      if (upstream_sent_us_ == 0) upstream_sent_us_ = uv_hrtime() / 1000;
      upstream_->markRequestSent();
      adviceRequestSent();
      awaitResponseHead();
    }
    return;
  }
  const auto& bufs = to_upstream_.buffers();
  // Upstream time starts as the end of the request is handed over. Stamped before the write: a
  // stamp after it is late whenever the write's wake-up of the app preempts us, and a sample
  // shorter than the app's work would pull the latency baseline down.
  if (request_side_ == RequestSide::Complete) upstream_sent_us_ = uv_hrtime() / 1000;
  if (request_side_ == RequestSide::Complete && !request_sent_) adviceRequestSent();  // its last bytes
  upstream_writing_ = true;
  net::Socket::WriteStatus written =
      upstream_->socket().writeNow(bufs.data(), static_cast<unsigned>(bufs.size()));
  if (request_side_ != RequestSide::Complete || phase_ == Phase::Tunnel) {
    net::paceReads(client_->socket(), upstream_->socket(), written, to_upstream_.bytes());
  }
  switch (written) {
    case net::Socket::WriteStatus::Copied:
      // The socket holds what is left: the client's read block is free to go back.
      to_upstream_.clear();
      if (client_buf_lent_) {
        client_buf_lent_ = false;
        client_->socket().unlend();
      }
      [[fallthrough]];
    case net::Socket::WriteStatus::Pending:
      awaitUpstreamBytes();  // until the upstream takes it (read_timeout)
      return;
    case net::Socket::WriteStatus::Done:
      onUpstreamWritten(0);  // the kernel took it all: carry on as the callback would
      return;
    case net::Socket::WriteStatus::Error:
      upstream_writing_ = false;
      to_upstream_.clear();
      upstreamFailed(UpstreamErrorKind::Reset, "write to upstream failed");
      return;
  }
}

void Exchange::onUpstreamWritten(int status) {
  upstream_writing_ = false;
  upstream_quiet_since_ = uv_now(context_.loop);
  to_upstream_.clear();
  if (client_buf_lent_) {
    client_buf_lent_ = false;
    client_->socket().unlend();
  }
  if (status < 0) {
    upstreamFailed(UpstreamErrorKind::Reset, "upstream closed while receiving the request");
    return;
  }
  if (phase_ == Phase::Tunnel) {
    pumpTunnel();
    return;
  }
  if (request_side_ == RequestSide::Complete) {
    if (!request_sent_) {
      request_sent_ = true;
      if (upstream_sent_us_ == 0) upstream_sent_us_ = uv_hrtime() / 1000;
      if (upstream_ != nullptr) upstream_->markRequestSent();
      awaitResponseHead();
    }
    return;
  }
  pumpRequestBody();
}


}  // namespace loopguard::proxy
