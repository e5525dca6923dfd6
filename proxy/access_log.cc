#include "proxy/access_log.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <ctime>

#include "proxy/http/header_rules.h"

namespace loopguard::proxy {

namespace {

using http::appendDecimal;

constexpr char kHex[] = "0123456789abcdef";

// Length of the well-formed UTF-8 sequence at the start of `s`, or 0 if it is not one.
size_t utf8Sequence(std::string_view s) {
  auto at = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char b = at(0);
  size_t n = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    if (b == 0xE0) low = 0xA0;   // overlong
    if (b == 0xED) high = 0x9F;  // surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    if (b == 0xF0) low = 0x90;   // overlong
    if (b == 0xF4) high = 0x8F;  // beyond U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  for (size_t i = 1; i < n; ++i) {
    unsigned char lo = i == 1 ? low : 0x80;
    unsigned char hi = i == 1 ? high : 0xBF;
    if (at(i) < lo || at(i) > hi) return 0;
  }
  return n;
}

// A JSON string literal, quotes included. Unlike http::appendJsonEscaped (for the proxy's own,
// ASCII, messages) this takes any bytes: request targets may carry any byte above 0x20 (llhttp
// passes them), so well-formed UTF-8 is kept and any other byte is written as \u00XX, and every
// line is valid JSON whatever the client sent.
void appendJsonString(std::string& out, std::string_view text) {
  out.push_back('"');
  size_t i = 0;
  while (i < text.size()) {
    auto u = static_cast<unsigned char>(text[i]);
    if (u == '"' || u == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(u));
    } else if (u >= 0x20 && u < 0x7f) {
      out.push_back(static_cast<char>(u));
    } else if (size_t n = u >= 0x80 ? utf8Sequence(text.substr(i)) : 0; n > 0) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    } else {
      out.append("\\u00");
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
    ++i;
  }
  out.push_back('"');
}

// logfmt: bare when it is one plain token, else the JSON literal.
bool bareInText(std::string_view text) {
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '"' || c == '\\' || c == '=') return false;
  }
  return true;
}

// Nanoseconds as milliseconds with three decimals ("45.210").
void appendMillis(std::string& out, uint64_t ns) {
  uint64_t us = (ns + 500) / 1000;
  appendDecimal(out, us / 1000);
  out.push_back('.');
  uint64_t frac = us % 1000;
  out.push_back(static_cast<char>('0' + frac / 100));
  out.push_back(static_cast<char>('0' + frac / 10 % 10));
  out.push_back(static_cast<char>('0' + frac % 10));
}

// Writes the fields in one order for both formats; only the punctuation differs.
class LineWriter {
 public:
  LineWriter(std::string& out, AccessLogFormat format)
      : out_(out), json_(format == AccessLogFormat::Json) {}

  void time(std::string_view t) {
    if (json_) {
      out_.append("{\"time\":\"");
      out_.append(t);
      out_.push_back('"');
    } else {
      out_.append(t);
    }
  }
  void string(std::string_view key, std::string_view value) {
    if (value.empty()) return absent(key);
    this->key(key);
    if (json_ || !bareInText(value)) {
      appendJsonString(out_, value);
    } else {
      out_.append(value);
    }
  }
  void number(std::string_view key, uint64_t value) {
    this->key(key);
    appendDecimal(out_, value);
  }
  void signedNumber(std::string_view key, int64_t value) {
    this->key(key);
    if (value < 0) out_.push_back('-');
    appendDecimal(out_, value < 0 ? 0 - static_cast<uint64_t>(value) : static_cast<uint64_t>(value));
  }
  void millis(std::string_view key, const std::optional<uint64_t>& ns) {
    if (!ns) return absent(key);
    this->key(key);
    appendMillis(out_, *ns);
  }
  template <class T>
  void optionalNumber(std::string_view key, const std::optional<T>& value) {
    if (!value) return absent(key);
    signedNumber(key, static_cast<int64_t>(*value));
  }
  void end() {
    if (json_) out_.push_back('}');
  }

 private:
  void key(std::string_view k) {
    if (json_) {
      out_.append(",\"");
      out_.append(k);
      out_.append("\":");
    } else {
      out_.push_back(' ');
      out_.append(k);
      out_.push_back('=');
    }
  }
  void absent(std::string_view k) {
    key(k);
    out_.append(json_ ? "null" : "-");
  }

  std::string& out_;
  bool json_;
};

bool isLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool allZeros(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

}  // namespace

std::string formatUtcMillis(int64_t unix_ms) {
  time_t seconds = static_cast<time_t>(unix_ms / 1000);
  int ms = static_cast<int>(unix_ms % 1000);
  if (ms < 0) {
    ms += 1000;
    --seconds;
  }
  struct tm tm {};
  gmtime_r(&seconds, &tm);
  char buf[96];  // room for any int the format could print, so GCC sees no truncation
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

void formatAccessRecord(const AccessRecord& r, AccessLogFormat format, std::string_view time,
                        std::string& out) {
  LineWriter w(out, format);
  w.time(time);
  w.string("request_id", r.request_id);
  w.string("client", r.client);
  w.string("method", r.method);
  w.string("path", r.path);
  w.string("route", r.route);
  w.number("status", static_cast<uint64_t>(r.status));
  w.number("bytes", r.bytes);
  w.millis("duration_ms", r.duration_ns);
  w.millis("queue_ms", r.queue_ns);
  w.millis("upstream_ms", r.upstream_ns);
  w.string("target", r.target);
  w.string("pool", r.pool);
  w.optionalNumber("worker", r.worker);
  w.optionalNumber("worker_pid", r.worker_pid);
  w.string("overload", r.overload);
  w.string("trace_id", r.trace_id);
  w.string("error", r.error);
  w.end();
}

std::string_view traceIdOf(std::string_view v) {
  // version "-" trace-id(32) "-" parent-id(16) "-" flags(2); a future version may append more
  // after another "-", an unknown version "ff" is invalid, and all-zero ids are invalid.
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return {};
  std::string_view version = v.substr(0, 2);
  std::string_view trace = v.substr(3, 32);
  std::string_view parent = v.substr(36, 16);
  std::string_view flags = v.substr(53, 2);
  if (!isLowerHex(version) || version == "ff" || !isLowerHex(trace) || !isLowerHex(parent) ||
      !isLowerHex(flags) || allZeros(trace) || allZeros(parent)) {
    return {};
  }
  if (v.size() > 55 && (version == "00" || v[55] != '-')) return {};
  return trace;
}

AccessLog::AccessLog() = default;
AccessLog::~AccessLog() = default;

void AccessLog::configure(bool enabled, AccessLogFormat format) {
  sink_ = enabled ? spdlog::get("access") : nullptr;
  format_ = format;
}

std::string_view AccessLog::now() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
  if (ts.tv_sec != cached_second_) {
    cached_second_ = ts.tv_sec;
    time_ = formatUtcMillis(ms);
  } else {
    // Same second: only the milliseconds change ("…:01.123Z").
    int frac = static_cast<int>(ms % 1000);
    size_t at = time_.size() - 4;
    time_[at] = static_cast<char>('0' + frac / 100);
    time_[at + 1] = static_cast<char>('0' + frac / 10 % 10);
    time_[at + 2] = static_cast<char>('0' + frac % 10);
  }
  return time_;
}

void AccessLog::write(const AccessRecord& record) {
  if (!sink_) return;
  line_.clear();
  formatAccessRecord(record, format_, now(), line_);
  sink_->log(spdlog::level::info, spdlog::string_view_t(line_.data(), line_.size()));
}

}  // namespace loopguard::proxy
