#include "offload/abandoned_request.h"

namespace loopguard::offload {

AbandonedRequest* AbandonedRequest::start(upstream::UpstreamConnection* c, Done done,
                                          void* owner) {
  auto* self = new AbandonedRequest(c, done, owner);
  c->attach(self, self, 64 * 1024);  // reads on, with a fresh response parser
  return self;
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
  upstream::UpstreamConnection* c = connection_;
  c->detach();
  done_(owner_, c);
  delete this;  // last: nothing of ours is touched after the owner's callback
}

}  // namespace loopguard::offload
