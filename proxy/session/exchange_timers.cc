// The exchange's silence timers: what it waits on, since when, and what happens when the wait
// lasts too long. Reads and writes only note the time (uv_now is the loop's cached clock); a
// timer is (re)started when a wait begins with no earlier deadline armed, and when it fires it
// re-arms itself for whatever quiet time is left. So a streaming exchange costs about one timer
// operation per timeout period, not one per read.
#include "proxy/session/exchange.h"

#include <spdlog/spdlog.h>

namespace loopguard::proxy {

using upstream::UpstreamErrorKind;

// ---------------------------------------------------------------------------------------------
// Client side: timeouts.body

bool Exchange::waitingForClientBody() const {
  if (request_side_ != RequestSide::Body || !client_->input().empty()) return false;
  // While an upstream write is pending the client is not read (backpressure): its silence is
  // ours, and read_timeout covers the upstream's.
  return phase_ == Phase::BufferingBody || (phase_ == Phase::Forwarding && !upstreamWriting());
}

void Exchange::awaitClientBody() {
  client_quiet_since_ = uv_now(context_.loop);
  if (!client_timer_.active()) {
    client_timer_.start(static_cast<uint64_t>(snapshot_->config().timeouts.body.count()));
  }
}

void Exchange::onClientTimer() {
  if (!waitingForClientBody()) return;  // re-armed when the exchange waits for the body again
  uint64_t limit = static_cast<uint64_t>(snapshot_->config().timeouts.body.count());
  uint64_t quiet = uv_now(context_.loop) - client_quiet_since_;
  if (quiet < limit) {
    client_timer_.start(limit - quiet);
    return;
  }
  spdlog::get("proxy")->debug("request {}: no body bytes for {} ms", record_.request_id, quiet);
  client_end_ = ClientEnd::TimedOut;
  ++record_.runtime->metrics->client_timeouts_body;
  // Releases the slot and closes a streamed body's upstream connection (it has half a request).
  respondError(408, "request body not received within timeouts.body");
}

// ---------------------------------------------------------------------------------------------
// Client side: timeouts.send (nginx's send_timeout), in every phase: a response, an error answer,
// a tunnel. A client that stops reading would otherwise keep the slot and the upstream
// connection (reads from the upstream stop while a client write is pending) for as long as it
// likes.

void Exchange::awaitClientWrite() {
  send_quiet_since_ = uv_now(context_.loop);  // the write before this one, if any, completed
  client_write_left_ = client_->socket().unsentBytes();
  if (!send_timer_.active()) {
    send_timer_.start(static_cast<uint64_t>(snapshot_->config().timeouts.send.count()));
  }
}

void Exchange::onSendTimer() {
  if (phase_ == Phase::Idle || !clientBusy()) return;  // re-armed by the next pending write
  uint64_t now = uv_now(context_.loop);
  // As for an upstream write, bytes the client took since the last look are progress; here the
  // kernel's queue counts too (unsentBytes), so any reading at all is seen. A stalled client is
  // noticed within one to two send timeouts, a slow one that keeps reading never.
  size_t left = client_->socket().unsentBytes();
  if (left < client_write_left_) send_quiet_since_ = now;
  client_write_left_ = left;
  uint64_t limit = static_cast<uint64_t>(snapshot_->config().timeouts.send.count());
  uint64_t quiet = now - send_quiet_since_;
  if (quiet < limit) {
    send_timer_.start(limit - quiet);
    return;
  }
  spdlog::get("proxy")->debug("request {}: the client took no response bytes for {} ms",
                              record_.request_id, quiet);
  metrics::RouteMetrics& m =
      record_.runtime != nullptr ? *record_.runtime->metrics : context_.unrouted;
  ++m.client_timeouts_send;
  client_end_ = ClientEnd::Stalled;
  // The access log keeps the status sent (499 if none was), with this as its error.
  abort("the client read nothing within timeouts.send");
}

// ---------------------------------------------------------------------------------------------
// Upstream side: response_timeout, then read_timeout

Exchange::UpstreamWait Exchange::upstreamWait() const {
  if (upstream_ == nullptr || phase_ != Phase::Forwarding) return UpstreamWait::None;
  if (upstreamWriting()) return UpstreamWait::Bytes;  // the upstream has to take the request
  if (response_side_ == ResponseSide::None) {
    return request_side_ == RequestSide::Sent ? UpstreamWait::Head : UpstreamWait::None;
  }
  // A complete response, or one that waits for the client to read: not the upstream's turn.
  if (response_side_ == ResponseSide::Complete || clientBusy() || response_side_ == ResponseSide::Upgraded) {
    return UpstreamWait::None;
  }
  return UpstreamWait::Bytes;
}

void Exchange::awaitResponseHead() {
  request_sent_at_ = uv_now(context_.loop);
  if (upstreamWait() != UpstreamWait::Head) return;
  armUpstreamTimer(request_sent_at_ +
                   static_cast<uint64_t>(record_.runtime->target->responseTimeout().count()));
}

void Exchange::awaitUpstreamBytes() {
  upstream_quiet_since_ = uv_now(context_.loop);
  if (upstreamWait() != UpstreamWait::Bytes) return;
  if (upstreamWriting()) upstream_write_left_ = upstream_->stream().socket().writeQueueSize();
  armUpstreamTimer(upstream_quiet_since_ +
                   static_cast<uint64_t>(record_.runtime->target->readTimeout().count()));
}

void Exchange::armUpstreamTimer(uint64_t deadline_ms) {
  if (upstream_timer_.active() && upstream_timer_at_ <= deadline_ms) return;  // fires first
  uint64_t now = uv_now(context_.loop);
  upstream_timer_at_ = deadline_ms;
  upstream_timer_.start(deadline_ms > now ? deadline_ms - now : 0);
}

void Exchange::onUpstreamTimer() {
  uint64_t now = uv_now(context_.loop);
  uint64_t deadline = 0;
  switch (upstreamWait()) {
    case UpstreamWait::None:
      return;  // re-armed when the exchange waits on the upstream again
    case UpstreamWait::Head:
      deadline = request_sent_at_ +
                 static_cast<uint64_t>(record_.runtime->target->responseTimeout().count());
      if (now < deadline) break;
      upstreamFailed(UpstreamErrorKind::Timeout, "no response head within response_timeout");
      return;
    case UpstreamWait::Bytes:
      if (upstreamWriting()) {
        // libuv reports a write only once it is whole; a queue that shrank since the last look
        // is progress. So a stalled write is noticed within one to two read_timeouts.
        size_t left = upstream_->stream().socket().writeQueueSize();
        if (left < upstream_write_left_) upstream_quiet_since_ = now;
        upstream_write_left_ = left;
      }
      deadline = upstream_quiet_since_ +
                 static_cast<uint64_t>(record_.runtime->target->readTimeout().count());
      if (now < deadline) break;
      upstreamTimedOut(upstreamWriting() ? "the upstream took no request bytes within read_timeout"
                                         : "no response bytes within read_timeout");
      return;
  }
  upstream_timer_at_ = deadline;
  upstream_timer_.start(deadline - now);
}

void Exchange::upstreamTimedOut(const char* why) {
  if (response_side_ == ResponseSide::None || record_.bytes == 0) {
    upstreamFailed(UpstreamErrorKind::Timeout, why);  // 504
    return;
  }
  // Part of the response is with the client: all that is left is to cut it. The connection is
  // not reused (finish() sees an incomplete response).
  record_.runtime->target->recordError(UpstreamErrorKind::Timeout);
  spdlog::get("upstream")
      ->warn("request {}: upstream {} timed out mid-response: {}", record_.request_id,
             record_.target_name, why);
  abort(why);
}

}  // namespace loopguard::proxy
