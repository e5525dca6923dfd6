#include "offload/abandoned_request.h"

namespace loopguard::offload {

AbandonedRequest::AbandonedRequest(upstream::UpstreamConnection* c, Owner& owner)
    : connection_(c), owner_(owner) {
  c->attach(this, this, 64 * 1024);  // reads on, with a fresh response parser
}

int AbandonedRequest::onMessageComplete() {
  complete_ = true;
  return http::kPauseParser;
}

void AbandonedRequest::onUpstreamInput() {
  net::Socket& in = connection_->socket();
  std::string_view bytes = in.input();
  http::ParseResult r = connection_->parser().execute(bytes.data(), bytes.size());
  in.consume(bytes.size());  // dropped: nobody wants this response
  // Anything but "need more" means the response ended (or cannot be followed): the worker is
  // done with the request either way.
  if (complete_ || r.status != http::ParseStatus::NeedMore) finish();
}

void AbandonedRequest::finish() {
  if (finished_) return;
  finished_ = true;
  connection_->detach();
  owner_.onAbandonedDone(connection_);  // last: it hands us to the deferred delete
}

}  // namespace loopguard::offload
