// Entry points, and the top of the schema: top-level keys, the small global sections, offload,
// and the checks that need the whole file (listener clashes, what each Purpose requires).
#include "config/loader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

#include "config/schema_loader.h"
#include "config/values.h"

namespace loopguard::config {

std::string ConfigError::format() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

std::string namesOf(const std::set<std::string>& names) {
  if (names.empty()) return "none defined";
  std::string out = "defined: ";
  bool first = true;
  for (const std::string& name : names) {
    out += (first ? "" : ", ") + name;
    first = false;
  }
  return out;
}

namespace {

// Bigger than any real config; keeps a mistaken path such as /dev/zero from eating memory.
constexpr size_t kMaxConfigFileBytes = 16 * kMiB;

constexpr std::string_view kTopKeys[] = {"listen",    "admin", "log",    "limits", "timeouts",
                                         "upstreams", "pools", "routes", "offload", "advice"};
constexpr std::string_view kAdminKeys[] = {"listen"};
constexpr std::string_view kLogKeys[] = {"level", "format", "access_log"};
constexpr std::string_view kLimitsKeys[] = {"max_connections", "max_header_bytes",
                                            "max_body_bytes"};
constexpr std::string_view kTimeoutsKeys[] = {"header", "idle", "drain"};
constexpr std::string_view kOffloadKeys[] = {"listen", "pool"};

// Port 0 asks the kernel for a free port, so two listeners on "host:0" never clash.
bool sameSocket(const Address& a, const Address& b) {
  return a == b && !(a.kind == Address::Kind::Tcp && a.port == 0);
}

// Where the first byte that is not part of well-formed UTF-8 sits, if any. yaml-cpp passes such
// bytes through, and they would surface much later, as an exception from the JSON encoder
// behind GET /config.
std::optional<SourcePos> findInvalidUtf8(std::string_view text, unsigned char& bad) {
  int line = 1;
  size_t line_start = 0;
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    unsigned char low = 0x80;  // allowed range of the first continuation byte
    unsigned char high = 0xBF;
    if (byte < 0x80) {
      extra = 0;
    } else if (byte >= 0xC2 && byte <= 0xDF) {
      extra = 1;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      extra = 2;
      if (byte == 0xE0) low = 0xA0;   // overlong
      if (byte == 0xED) high = 0x9F;  // UTF-16 surrogates
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      extra = 3;
      if (byte == 0xF0) low = 0x90;   // overlong
      if (byte == 0xF4) high = 0x8F;  // beyond U+10FFFF
    } else {
      bad = byte;
      return SourcePos{line, static_cast<int>(i - line_start) + 1};
    }
    for (size_t k = 1; k <= extra; ++k) {
      const auto next = i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0;
      const unsigned char lo = k == 1 ? low : 0x80;
      const unsigned char hi = k == 1 ? high : 0xBF;
      if (next < lo || next > hi) {
        bad = byte;
        return SourcePos{line, static_cast<int>(i - line_start) + 1};
      }
    }
    if (byte == '\n') {
      ++line;
      line_start = i + 1;
    }
    i += extra + 1;
  }
  return std::nullopt;
}

}  // namespace

void SchemaLoader::load(std::string_view yaml) {
  unsigned char bad = 0;
  if (std::optional<SourcePos> pos = findInvalidUtf8(yaml, bad)) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", bad);
    reader_.error(*pos,
                  std::string("not valid UTF-8 (byte ") + hex + "); the config must be UTF-8 text");
    return;
  }
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    reader_.error(toSourcePos(e.mark), "YAML syntax error: " + e.msg);
    return;
  } catch (const YAML::Exception& e) {
    reader_.error(toSourcePos(e.mark), "YAML error: " + e.msg);
    return;
  }
  if (documents.size() > 1) {
    // A second document would otherwise be ignored without a word.
    reader_.error(toSourcePos(documents[1].Mark()),
                  "a config file holds one YAML document; found a second one here");
  }
  readRoot(documents.empty() ? YAML::Node() : documents[0]);
}

void SchemaLoader::readRoot(const YAML::Node& root) {
  Item item{root, SourcePos{1, 1}, ""};
  if (!item.isNull() && !root.IsMap()) {
    reader_.error(toSourcePos(root.Mark()),
                  "the config must be a mapping of top-level keys (listen, routes, ...)");
    return;
  }
  auto fields = reader_.mapping(item, "the top level", kTopKeys);
  if (!fields) return;
  if (const Field* f = fields->get("listen"); f != nullptr && !f->value.isNull()) {
    listen_given_ = true;
    Address address;
    if (reader_.address(f->value, address)) config_.listen = std::move(address);
  }
  if (const Field* f = fields->get("admin")) readAdmin(f->value);
  if (const Field* f = fields->get("log")) readLog(f->value);
  if (const Field* f = fields->get("limits")) readLimits(f->value);
  if (const Field* f = fields->get("timeouts")) readTimeouts(f->value);
  // Upstreams and pools first, whatever the file order, so routes and offload can check their
  // references against them.
  if (const Field* f = fields->get("upstreams")) readUpstreams(f->value);
  if (const Field* f = fields->get("pools")) readPools(f->value);
  if (const Field* f = fields->get("routes")) {
    routes_pos_ = f->value.pos;
    readRoutes(f->value);
  }
  if (const Field* f = fields->get("offload"); f != nullptr && !f->value.isNull()) {
    offload_given_ = true;
    readOffload(f->value);
  }
  if (const Field* f = fields->get("advice")) readAdvice(f->value);
  checkListenersDiffer();
  checkPurpose();
}

void SchemaLoader::readAdmin(const Item& item) {
  auto fields = reader_.mapping(item, "admin", kAdminKeys);
  if (!fields) return;
  if (const Field* f = fields->get("listen"); f != nullptr && !f->value.isNull()) {
    admin_listen_pos_ = f->value.pos;
    Address address;
    if (reader_.address(f->value, address)) config_.admin.listen = std::move(address);
  }
}

void SchemaLoader::readLog(const Item& item) {
  auto fields = reader_.mapping(item, "log", kLogKeys);
  if (!fields) return;
  LogConfig& log = config_.log;
  if (const Field* f = fields->get("level")) {
    std::string level;
    if (reader_.string(f->value, level)) {
      if (level == "trace" || level == "debug" || level == "info" || level == "warn" ||
          level == "error") {
        log.level = level;
      } else {
        reader_.error(f->value, "unknown log level " + quoted(level) +
                                    " (expected one of: trace, debug, info, warn, error)");
      }
    }
  }
  if (const Field* f = fields->get("format")) {
    std::string format;
    if (reader_.string(f->value, format)) {
      if (format == "text") {
        log.format = LogFormat::Text;
      } else if (format == "json") {
        log.format = LogFormat::Json;
      } else {
        reader_.error(f->value,
                      "unknown log format " + quoted(format) + " (expected one of: text, json)");
      }
    }
  }
  if (const Field* f = fields->get("access_log")) reader_.boolean(f->value, log.access_log);
}

void SchemaLoader::readLimits(const Item& item) {
  auto fields = reader_.mapping(item, "limits", kLimitsKeys);
  if (!fields) return;
  GlobalLimits& limits = config_.limits;
  if (const Field* f = fields->get("max_connections")) {
    reader_.count(f->value, limits.max_connections, 1, UINT32_MAX);
  }
  if (const Field* f = fields->get("max_header_bytes")) {
    // Below 1KiB ordinary browser requests (cookies, user agent) would already get 431.
    reader_.size(f->value, limits.max_header_bytes, kKiB);
  }
  if (const Field* f = fields->get("max_body_bytes"))
    reader_.size(f->value, limits.max_body_bytes, 0);
}

void SchemaLoader::readTimeouts(const Item& item) {
  auto fields = reader_.mapping(item, "timeouts", kTimeoutsKeys);
  if (!fields) return;
  Timeouts& timeouts = config_.timeouts;
  // 0 would refuse every request (header) or every keep-alive (idle) at once; a drain of 0 is a
  // legitimate "stop now".
  if (const Field* f = fields->get("header")) reader_.duration(f->value, timeouts.header, false);
  if (const Field* f = fields->get("idle")) reader_.duration(f->value, timeouts.idle, false);
  if (const Field* f = fields->get("drain")) reader_.duration(f->value, timeouts.drain, true);
}

void SchemaLoader::readOffload(const Item& item) {
  auto fields = reader_.mapping(item, "offload", kOffloadKeys);
  if (!fields) return;
  OffloadConfig offload;
  bool ok = true;
  if (const Field* f = fields->get("listen")) {
    offload_listen_pos_ = f->value.pos;
    ok &= reader_.address(f->value, offload.listen);
  } else {
    reader_.error(item, "missing required key \"listen\"");
    ok = false;
  }
  if (const Field* f = fields->get("pool")) {
    if (reader_.nonEmptyString(f->value, offload.pool)) {
      if (pool_names_.count(offload.pool) == 0) {
        reader_.error(f->value,
                      "no pool named " + quoted(offload.pool) + " (" + namesOf(pool_names_) + ")");
        ok = false;
      }
    } else {
      ok = false;
    }
  } else {
    reader_.error(item, "missing required key \"pool\"");
    ok = false;
  }
  if (ok) config_.offload = std::move(offload);
}

void SchemaLoader::checkListenersDiffer() {
  if (config_.listen && config_.admin.listen &&
      sameSocket(*config_.listen, *config_.admin.listen)) {
    reader_.error(admin_listen_pos_,
                  "admin.listen: must differ from listen (" + config_.listen->toString() + ")");
  }
  if (!config_.offload) return;
  const Address& offload = config_.offload->listen;
  if (config_.listen && sameSocket(*config_.listen, offload)) {
    reader_.error(offload_listen_pos_,
                  "offload.listen: must differ from listen (" + offload.toString() + ")");
  }
  if (config_.admin.listen && sameSocket(*config_.admin.listen, offload)) {
    reader_.error(offload_listen_pos_,
                  "offload.listen: must differ from admin.listen (" + offload.toString() + ")");
  }
}

void SchemaLoader::checkPurpose() {
  // `validate` accepts a sidecar-only file when it has an offload section; otherwise it holds
  // the file to the proxy's requirements, the common case.
  bool as_offload = purpose_ == Purpose::Offload || (purpose_ == Purpose::Any && offload_given_);
  const SourcePos start{1, 1};
  if (as_offload) {
    if (!offload_given_) {
      reader_.error(start, "missing required key \"offload\" (needed by loopguard offload)");
    }
    return;
  }
  const std::string who = purpose_ == Purpose::Proxy
                              ? "needed by loopguard proxy"
                              : "needed by loopguard proxy; loopguard offload needs offload";
  if (!listen_given_) reader_.error(start, "missing required key \"listen\" (" + who + ")");
  if (!routes_pos_) {
    reader_.error(start, "missing required key \"routes\" (" + who + ")");
  } else if (route_items_ == 0 && !routes_not_a_list_) {
    // A list with broken entries has reported them already; only an empty one is news.
    reader_.error(*routes_pos_, "routes: must list at least one route (" + who + ")");
  }
}

LoadResult SchemaLoader::finish() {
  LoadResult result;
  result.errors = std::move(reader_.errors());
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [](const ConfigError& a, const ConfigError& b) {
                     return a.line != b.line ? a.line < b.line : a.column < b.column;
                   });
  if (result.errors.empty()) result.config = std::make_shared<const Config>(std::move(config_));
  return result;
}

namespace {

LoadResult failure(const std::string& file, std::string message) {
  LoadResult result;
  result.errors.push_back(ConfigError{file, 1, 1, std::move(message)});
  return result;
}

}  // namespace

// POSIX read so a directory or a FIFO gives its own errno rather than an empty string.
bool readWholeFile(const std::string& path, std::string& out, std::string& why) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    why = std::strerror(errno);
    return false;
  }
  std::string data;
  char buffer[64 * 1024];
  bool ok = true;
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      why = std::strerror(errno);
      ok = false;
      break;
    }
    if (n == 0) break;
    data.append(buffer, static_cast<size_t>(n));
    if (data.size() > kMaxConfigFileBytes) {
      why = "larger than " + std::to_string(kMaxConfigFileBytes / kMiB) + "MiB";
      ok = false;
      break;
    }
  }
  ::close(fd);
  if (ok) out = std::move(data);
  return ok;
}

LoadResult loadConfigString(std::string_view yaml, const std::string& file_name, Purpose purpose) {
  try {
    SchemaLoader loader(file_name, purpose);
    loader.load(yaml);
    return loader.finish();
  } catch (const std::exception& e) {
    // Not expected: every yaml-cpp call above is guarded. Still, never let it escape.
    return failure(file_name, std::string("internal error while reading the config: ") + e.what());
  }
}

LoadResult loadConfigFile(const std::string& path, Purpose purpose) {
  try {
    std::string text;
    std::string why;
    if (!readWholeFile(path, text, why)) return failure(path, "cannot read file: " + why);
    LoadResult result = loadConfigString(text, path, purpose);
    result.source = std::move(text);
    return result;
  } catch (const std::exception& e) {
    return failure(path, std::string("cannot read file: ") + e.what());
  }
}

}  // namespace loopguard::config
