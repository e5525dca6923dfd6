#include "offload/abandoned_request.h"

namespace loopguard::offload {

AbandonedRequest::AbandonedRequest(upstream::UpstreamConnection* c, Owner& owner)
    : connection_(c), owner_(owner) {
  c->attach(*this, 64 * 1024);  // a fresh response parser; this is the stream's handler
  // Parsing what has arrived already could end the request here, inside its owner's call
  // that creates it: it starts from the loop instead.
  start_.post(c->stream().loop());
}

void AbandonedRequest::start() { connection_->stream().resume(); }

http::ParserAction AbandonedRequest::onStreamMessageEnd(proxy::HttpStream&) {
  complete_ = true;
  return http::ParserAction::Pause;
}

void AbandonedRequest::onStreamParsed(proxy::HttpStream&, const http::ParseResult& result) {
  // Anything but "need more" means the response ended (or cannot be followed): the worker is
  // done with the request either way.
  if (complete_ || result.status != http::ParseStatus::NeedMore) finish();
}

void AbandonedRequest::finish() {
  if (finished_) return;
  finished_ = true;
  start_.cancel();
  connection_->detach();
  owner_.onAbandonedDone(connection_);  // last: it hands us to the deferred delete
}

}  // namespace loopguard::offload
