// The Exchange's three calls into the loop-block advisor (proxy/advice/observer.h). "Sent" is
// when the write carrying the request's last bytes is issued: a write that completes later
// (a queued one) must not make the app look faster than it is. Only
// requests of upstream routes are reported (a pool worker is outside the app's loop), and not
// upgrades (a 101 says nothing about the handler). The advisor keeps everything else.
#include "proxy/exchange.h"

#include "proxy/server/client_connection.h"

namespace loopguard::proxy {

void Exchange::adviceRequestSent() {
  advice::Observer* observer = snapshot_ ? snapshot_->advice : nullptr;
  if (observer == nullptr || upstream_ == nullptr || websocket_ ||
      route_->route->target_kind != config::TargetKind::Upstream) {
    return;
  }
  adviceEnded();  // a retried request: its first attempt never got a head
  advice::SentRequest r;
  r.route = route_->route->name;
  r.upstream = route_->route->target;
  r.method = method_;
  r.target = client_->parser().target();
  r.connection = upstream_;
  r.socket = upstream_->socket().stream();
  r.first_on_connection = upstream_->requestsServed() == 1;
  advice_ticket_ = observer->onRequestSent(r);
}

void Exchange::adviceResponseHead() {
  if (advice_ticket_ == 0) return;
  advice::ResponseHead head;
  head.streamed = response_framing_ == http::BodyFraming::Chunked ||
                  response_framing_ == http::BodyFraming::UntilClose;
  snapshot_->advice->onResponseHead(std::exchange(advice_ticket_, 0), head);
}

void Exchange::adviceEnded() {
  if (advice_ticket_ == 0) return;
  snapshot_->advice->onRequestAbandoned(std::exchange(advice_ticket_, 0));
}

}  // namespace loopguard::proxy
