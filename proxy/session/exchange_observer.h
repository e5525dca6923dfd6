// What an Exchange tells the parts that watch requests go by (the access log, the adaptive
// limits' latency samples, the loop-block advisor): one interface, one list per config snapshot,
// one emit per event. The exchange does not know who listens; a listener that is off (advice
// disabled) is not in the list, so it costs nothing per request.
//
// Events of one request, in order (the middle ones once per upstream attempt; a retried request
// repeats them):
//   onUpstreamAttached   an upstream connection carries the request now
//   onRequestSent        the write carrying the request's last bytes was issued
//   onAttemptEnded       the attempt's outcome is known: a response head (Ok, or Drop for a 5xx)
//                        or an upstream failure (Drop); only for attempts whose request was sent
//   onResponseHead       the response head is on its way to the client
//   onFinished           the exchange ended, whatever the path (once per request)
//
// Every event passes the request's ExchangeRecord: the facts the exchange keeps (valid during
// the call only) and the few per-request fields the listeners keep in it, since one listener
// serves every request of the snapshot and must not allocate per request.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/advice/observer.h"
#include "proxy/routing/route_latency.h"
#include "proxy/upstream/target.h"

namespace loopguard::http {
class MessageParser;
}
namespace loopguard::routing {
struct CompiledRoute;
}
namespace loopguard::upstream {
class Lease;
}

namespace loopguard::proxy {

struct RouteRuntime;

// One request's facts, owned by its (pooled) Exchange: cleared, not freed, between requests.
struct ExchangeRecord {
  std::string request_id;
  std::string method;
  std::string target_name;  // the upstream endpoint or worker that got the request
  std::string error;        // the message of an answer the proxy made itself
  std::string_view client;  // the client's address
  const http::MessageParser* request = nullptr;   // the client's parser: the target, the headers
  const routing::CompiledRoute* route = nullptr;  // null until routed
  const RouteRuntime* runtime = nullptr;
  bool websocket = false;
  // uv_hrtime() marks, 0 = not reached.
  uint64_t start_ns = 0;
  uint64_t queue_start_ns = 0;    // asked the route's limiter for a slot
  uint64_t admitted_ns = 0;       // got it
  uint64_t upstream_sent_us = 0;  // uv_hrtime()/1000 when this attempt's request went up; 0: not
  int status = 0;
  uint64_t bytes = 0;         // response bytes written to the client
  const char* overload = "";  // the reason of an overload refusal

  // Kept by the listeners (one field each: they are few and known).
  advice::Ticket advice_ticket = 0;  // the advisor's: this request as it knows it (0: not)
  upstream::WorkerIdentity worker;   // the access log's: a pool worker's index and pid

  // Ready for the next request; the strings keep their capacity.
  void clear();
};

class ExchangeObserver {
 public:
  virtual ~ExchangeObserver() = default;
  virtual void onUpstreamAttached(ExchangeRecord& record,
                                  upstream::Lease& connection) {
    (void)record;
    (void)connection;
  }
  virtual void onRequestSent(ExchangeRecord& record, upstream::Lease& connection) {
    (void)record;
    (void)connection;
  }
  virtual void onAttemptEnded(ExchangeRecord& record, routing::SampleOutcome outcome) {
    (void)record;
    (void)outcome;
  }
  // streamed: chunked or close-delimited, a head that may come long before the handler is done.
  virtual void onResponseHead(ExchangeRecord& record, bool streamed) {
    (void)record;
    (void)streamed;
  }
  virtual void onFinished(ExchangeRecord& record) { (void)record; }
};

// The listeners of one snapshot, in the order they hear each event. Fixed capacity, filled once
// when the snapshot is built: emitting walks a small array, nothing is allocated per request.
class ExchangeObservers {
 public:
  static constexpr size_t kCapacity = 4;

  // False (and nothing added) when full: a new listener needs a larger kCapacity.
  bool add(ExchangeObserver* observer) {
    if (observer == nullptr || count_ == kCapacity) return false;
    list_[count_++] = observer;
    return true;
  }
  size_t size() const { return count_; }

  void upstreamAttached(ExchangeRecord& r, upstream::Lease& c) const {
    for (size_t i = 0; i < count_; ++i) list_[i]->onUpstreamAttached(r, c);
  }
  void requestSent(ExchangeRecord& r, upstream::Lease& c) const {
    for (size_t i = 0; i < count_; ++i) list_[i]->onRequestSent(r, c);
  }
  void attemptEnded(ExchangeRecord& r, routing::SampleOutcome outcome) const {
    for (size_t i = 0; i < count_; ++i) list_[i]->onAttemptEnded(r, outcome);
  }
  void responseHead(ExchangeRecord& r, bool streamed) const {
    for (size_t i = 0; i < count_; ++i) list_[i]->onResponseHead(r, streamed);
  }
  void finished(ExchangeRecord& r) const {
    for (size_t i = 0; i < count_; ++i) list_[i]->onFinished(r);
  }

 private:
  std::array<ExchangeObserver*, kCapacity> list_{};
  size_t count_ = 0;
};

}  // namespace loopguard::proxy
