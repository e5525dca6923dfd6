// The access log: one line per request on stdout, written when the request ends. The exchange
// (and the client connection, for a request refused before it had a route) fills a plain
// AccessRecord; AccessLog formats it whole, time included, in one of two formats that carry the
// same fields in the same order:
//
//   text  2026-11-25T17:57:01.123Z request_id=5f0c… client=10.0.0.7 method=GET path=/cpu/hash
//         route=hash status=200 bytes=312 duration_ms=45.210 queue_ms=3.002 upstream_ms=42.181
//         target=cpu/0 pool=cpu worker=0 worker_pid=7756 overload=- trace_id=- error=-
//         (logfmt: key=value; a value with spaces, quotes or '=' is a JSON string literal; an
//         absent value is "-")
//   json  {"time":"2026-11-25T17:57:01.123Z","request_id":"5f0c…",…,"error":null}
//         (one object per line; an absent value is null)
//
// The time is the request's end (as nginx's $time_iso8601), RFC 3339 in UTC with milliseconds.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
}

namespace loopguard::proxy {

enum class AccessLogFormat { Text, Json };

// What one line says. Views must stay valid for the write() call only. Empty strings and unset
// optionals are written as absent ("-" / null).
struct AccessRecord {
  std::string_view request_id;
  std::string_view client;  // the client's IP address (empty for a unix-socket client)
  std::string_view method;  // empty if the request line was never parsed
  std::string_view path;    // the original request target, query included
  std::string_view route;   // empty before a route was chosen
  int status = 0;
  uint64_t bytes = 0;  // written to the client, head and body
  std::optional<uint64_t> duration_ns;  // from the parsed request head to the end
  // Waiting for a route slot (for pool routes: for a free worker too); 0 when admitted at once;
  // unset if the request never reached the route's limiter.
  std::optional<uint64_t> queue_ns;
  // From admission to the end: connecting (or taking a worker), the upstream's own work and the
  // response's transfer. Unset if the request was never admitted.
  std::optional<uint64_t> upstream_ns;
  std::string_view target;  // the endpoint ("10.0.0.7:8000", "unix:/…") or worker ("cpu/0")
  std::string_view pool;    // for a pool worker: its pool, index and process id
  std::optional<uint32_t> worker;
  std::optional<int64_t> worker_pid;
  std::string_view overload;  // queue_full | queue_timeout | no_workers, on a refusal
  std::string_view trace_id;  // of a well-formed W3C `traceparent` request header
  std::string_view error;     // the message of an answer the proxy made itself
};

// "2026-11-25T17:57:01.123Z" for a Unix time in milliseconds.
std::string formatUtcMillis(int64_t unix_ms);

// One line for `record` (no newline), at `time` (formatUtcMillis output). Pure: unit-tested.
void formatAccessRecord(const AccessRecord& record, AccessLogFormat format, std::string_view time,
                        std::string& out);

// The trace id (32 lower-case hex digits) of a W3C `traceparent` value
// ("00-<trace-id>-<parent-id>-<flags>"), or empty if the value is not well-formed.
std::string_view traceIdOf(std::string_view traceparent);

// Writes formatted records to the "access" logger (buffered stdout; see common/logging.h).
class AccessLog {
 public:
  AccessLog();
  ~AccessLog();
  // Off when !enabled. The format follows log.format, or --log-format when given.
  void configure(bool enabled, AccessLogFormat format);
  bool enabled() const { return sink_ != nullptr; }
  AccessLogFormat format() const { return format_; }
  void write(const AccessRecord& record);

 private:
  std::string_view now();

  std::shared_ptr<spdlog::logger> sink_;
  AccessLogFormat format_ = AccessLogFormat::Text;
  std::string line_;
  int64_t cached_second_ = -1;  // the wall-clock second `time_` was formatted for
  std::string time_;
};

}  // namespace loopguard::proxy
