// The exchange's listeners (proxy/session/exchange_observer.h): each turns the events into what its
// consumer wants. Owned by the ProxyServer, registered in every snapshot it builds.
#pragma once

#include "proxy/access_log.h"
#include "proxy/advice/observer.h"
#include "proxy/session/exchange_observer.h"

namespace loopguard::proxy {

// The access log's line per request, and the pool worker that served it.
class AccessLogObserver final : public ExchangeObserver {
 public:
  explicit AccessLogObserver(AccessLog& log) : log_(log) {}
  void onUpstreamAttached(ExchangeRecord& record,
                          upstream::Lease& connection) override;
  void onFinished(ExchangeRecord& record) override;

 private:
  AccessLog& log_;
};

// The route limiter's latency hook: one sample per attempt, its upstream time (request written
// -> head). A tunnel's head says nothing about the app's load.
class LatencySampleObserver final : public ExchangeObserver {
 public:
  void onAttemptEnded(ExchangeRecord& record, routing::SampleOutcome outcome) override;
};

// The loop-block advisor (proxy/advice/observer.h). "Sent" is when the write carrying the
// request's last bytes is issued: a write that completes later (a queued one) must not make the
// app look faster than it is. Only requests of upstream routes are reported (a pool worker is
// outside the app's loop), and not upgrades (a 101 says nothing about the handler). Registered
// only while advice is enabled.
class AdvisorObserver final : public ExchangeObserver {
 public:
  explicit AdvisorObserver(advice::Observer& advisor) : advisor_(advisor) {}
  void onRequestSent(ExchangeRecord& record, upstream::Lease& connection) override;
  void onResponseHead(ExchangeRecord& record, bool streamed) override;
  // Ended without a head: error, timeout, client gone.
  void onFinished(ExchangeRecord& record) override { abandon(record); }

 private:
  void abandon(ExchangeRecord& record);
  advice::Observer& advisor_;
};

}  // namespace loopguard::proxy
