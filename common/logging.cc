#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

namespace loopguard {

namespace {

constexpr const char* kComponents[] = {"proxy", "upstream", "offload", "admin", "main", "config"};

// {"time":"...Z","level":"info","logger":"proxy","msg":"..."} with the message JSON-escaped.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    time_.format(msg, dest);
    fmt::format_to(std::back_inserter(dest), ",\"level\":\"{}\",\"logger\":\"",
                   spdlog::level::to_string_view(msg.level));
    dest.append(msg.logger_name.begin(), msg.logger_name.end());
    dest.append(std::string_view("\",\"msg\":\""));
    for (char c : msg.payload) {
      auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        dest.push_back('\\');
        dest.push_back(c);
      } else if (u < 0x20) {
        fmt::format_to(std::back_inserter(dest), "\\u{:04x}", u);
      } else {
        dest.push_back(c);
      }
    }
    dest.append(std::string_view("\"}\n"));
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }

 private:
  spdlog::pattern_formatter time_{"{\"time\":\"%Y-%m-%dT%H:%M:%S.%eZ\"", spdlog::pattern_time_type::utc,
                                  ""};
};

}  // namespace

bool setupLogging(const std::string& level, LogFormatKind format) {
  static bool buffered = [] { return std::setvbuf(stdout, nullptr, _IOFBF, 64 * 1024) == 0; }();
  (void)buffered;
  spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") return false;
  static auto err_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  static auto out_sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  for (const char* name : kComponents) {
    auto logger = spdlog::get(name);
    if (!logger) {
      logger = std::make_shared<spdlog::logger>(name, err_sink);
      spdlog::register_logger(logger);
    }
    logger->set_level(lvl);
    if (format == LogFormatKind::Json) {
      logger->set_formatter(std::make_unique<JsonFormatter>());
    } else {
      // UTC, as the access log and the JSON lines: one clock in every line loopguard writes.
      logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc);
    }
    logger->flush_on(spdlog::level::trace);
  }
  auto access = spdlog::get("access");
  if (!access) {
    access = std::make_shared<spdlog::logger>("access", out_sink);
    spdlog::register_logger(access);
  }
  access->set_level(spdlog::level::info);
  // Buffered: one write per ~64 KiB instead of one per request. The proxy flushes it on a
  // timer (at most ~200 ms late) and when it stops.
  access->flush_on(spdlog::level::off);
  // proxy/access_log.cc formats each line whole (time included), in the format it is told.
  access->set_pattern("%v");
  spdlog::set_default_logger(spdlog::get("main"));
  return true;
}

}  // namespace loopguard

namespace loopguard {

void flushAccessLog() {
  if (auto access = spdlog::get("access")) access->flush();
}

}  // namespace loopguard
