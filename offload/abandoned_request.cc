#include "offload/abandoned_request.h"

namespace loopguard::offload {

AbandonedRequest* AbandonedRequest::start(upstream::UpstreamConnection* c, Done done,
                                          void* owner) {
  auto* self = new AbandonedRequest(c, done, owner);
  c->attach(self, self, 0);  // reads on; the parser is never run
  return self;
}

void AbandonedRequest::finish() {
  upstream::UpstreamConnection* c = connection_;
  c->detach();
  done_(owner_, c);
  delete this;  // last: nothing of ours is touched after the owner's callback
}

}  // namespace loopguard::offload
