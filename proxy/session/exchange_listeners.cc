#include "proxy/session/exchange_listeners.h"

#include <uv.h>

#include <utility>

#include "proxy/http/message_parser.h"
#include "proxy/proxy_context.h"
#include "proxy/upstream/lease.h"

namespace loopguard::proxy {

void AccessLogObserver::onUpstreamAttached(ExchangeRecord& record,
                                           upstream::Lease& connection) {
  record.worker = record.runtime->target->identifyWorker(connection);
}

void AccessLogObserver::onFinished(ExchangeRecord& record) {
  if (!log_.enabled()) return;
  uint64_t now = uv_hrtime();
  AccessRecord r;
  r.request_id = record.request_id;
  r.client = record.client;
  r.method = record.method;
  if (record.request != nullptr) r.path = record.request->target();
  if (record.route != nullptr) r.route = record.route->route->name;
  r.status = record.status;
  r.bytes = record.bytes;
  r.duration_ns = now - record.start_ns;
  if (record.queue_start_ns != 0) {
    r.queue_ns = (record.admitted_ns != 0 ? record.admitted_ns : now) - record.queue_start_ns;
  }
  if (record.admitted_ns != 0) r.upstream_ns = now - record.admitted_ns;
  r.target = record.target_name;
  if (record.worker.known && record.runtime != nullptr) {
    r.pool = record.runtime->target->name();
    r.worker = record.worker.index;
    r.worker_pid = record.worker.pid;
  }
  r.overload = record.overload;
  if (record.request != nullptr)
    r.trace_id = traceIdOf(record.request->headers().get("traceparent"));
  r.error = record.error;
  log_.write(r);
}

void LatencySampleObserver::onAttemptEnded(ExchangeRecord& record, routing::SampleOutcome outcome) {
  if (record.websocket) return;
  record.runtime->limiter->recordUpstream(record.target_name, record.upstream_sent_us,
                                          uv_hrtime() / 1000, outcome);
}

void AdvisorObserver::onRequestSent(ExchangeRecord& record,
                                    upstream::Lease& connection) {
  if (record.websocket || record.route->route->target_kind != config::TargetKind::Upstream) {
    return;
  }
  abandon(record);  // a retried request: its first attempt never got a head
  advice::SentRequest r;
  r.route = record.route->route->name;
  r.upstream = record.route->route->target;
  r.method = record.method;
  r.target = record.request->target();
  r.connection = &connection;
  r.socket = connection.stream().socket().stream();
  r.first_on_connection = connection.requestsServed() == 1;
  record.advice_ticket = advisor_.onRequestSent(r);
}

void AdvisorObserver::onResponseHead(ExchangeRecord& record, bool streamed) {
  if (record.advice_ticket == 0) return;
  advice::ResponseHead head;
  head.streamed = streamed;
  advisor_.onResponseHead(std::exchange(record.advice_ticket, 0), head);
}

void AdvisorObserver::abandon(ExchangeRecord& record) {
  if (record.advice_ticket == 0) return;
  advisor_.onRequestAbandoned(std::exchange(record.advice_ticket, 0));
}

}  // namespace loopguard::proxy
