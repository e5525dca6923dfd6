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
#include <sstream>

#include <yaml-cpp/eventhandler.h>

#include "config/lint.h"
#include "config/schema_loader.h"
#include "config/values.h"
#include "config/yaml_errors.h"

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
constexpr std::string_view kAdminKeys[] = {"listen", "token_file"};
constexpr std::string_view kLogKeys[] = {"level", "format", "access_log"};
constexpr std::string_view kLimitsKeys[] = {"max_connections", "max_header_bytes",
                                            "max_body_bytes"};
constexpr std::string_view kTimeoutsKeys[] = {"header", "body", "idle", "drain"};
constexpr std::string_view kOffloadKeys[] = {"listen", "pool", "max_queue", "queue_timeout"};

// Port 0 asks the kernel for a free port, so two listeners on "host:0" never clash.
bool sameSocket(const Address& a, const Address& b) {
  return a == b && !(a.kind == Address::Kind::Tcp && a.port == 0);
}

// Where the first byte that is not text sits, if any: one that is not part of well-formed
// UTF-8, or a control byte YAML does not allow (anything below 0x20 but TAB, LF and CR, and
// DEL; YAML 1.2 "c-printable"). yaml-cpp passes bad UTF-8 through, to surface much later as an
// exception from the JSON encoder behind GET /config, and it takes a NUL for the end of the
// input, pointing its errors past it.
std::optional<SourcePos> findNonText(std::string_view text, unsigned char& bad, bool& utf8) {
  int line = 1;
  size_t line_start = 0;
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    size_t len = utf8CharLength(text, i);
    bool control = (byte < 0x20 && byte != '\t' && byte != '\n' && byte != '\r') || byte == 0x7F;
    if (len == 0 || control) {
      bad = byte;
      utf8 = len != 0;
      return SourcePos{line, static_cast<int>(i - line_start) + 1};
    }
    if (byte == '\n') {
      ++line;
      line_start = i + 1;
    }
    i += len;
  }
  return std::nullopt;
}

// Records where a document's root node starts (the mark of its first node event).
class RootMark final : public YAML::EventHandler {
 public:
  YAML::Mark mark = YAML::Mark::null_mark();

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { note(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { note(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    note(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    note(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    note(m);
  }
  void OnMapEnd() override {}

 private:
  void note(const YAML::Mark& m) {
    if (mark.is_null()) mark = m;
  }
};

}  // namespace

void SchemaLoader::load(std::string_view yaml) {
  unsigned char bad = 0;
  bool utf8 = true;
  if (std::optional<SourcePos> pos = findNonText(yaml, bad, utf8)) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", bad);
    reader_.error(*pos, utf8 ? std::string("control byte ") + hex + " (not allowed in YAML text)"
                             : std::string("not valid UTF-8 (byte ") + hex +
                                   "); the config must be UTF-8 text");
    return;
  }
  YAML::Node root;
  try {
    std::string text(yaml);
    // Where the first two documents start, from a pass over the parser's events (not
    // YAML::LoadAll: in yaml-cpp 0.7 it loops forever, adding a null document per turn, once the
    // parser stops consuming tokens, as on a file that starts with ","; yaml-cpp#1040).
    std::istringstream events(text);
    YAML::Parser parser(events);
    RootMark first;
    RootMark second;
    if (parser.HandleNextDocument(first) && parser.HandleNextDocument(second)) {
      if (second.mark.pos == first.mark.pos) {
        // The parser did not move: it is stuck on something it cannot read.
        size_t at = std::min(static_cast<size_t>(std::max(first.mark.pos, 0)), text.size());
        reader_.error(toSourcePos(first.mark), "YAML syntax error: unexpected " +
                                                   quoted(text.substr(at, utf8CharLength(text, at))));
        return;
      }
      // A second document would otherwise be ignored without a word.
      reader_.error(toSourcePos(second.mark),
                    "a config file holds one YAML document; found a second one here");
    }
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    YamlDiagnosis d = explainYamlError(yaml, toSourcePos(e.mark), e.msg);
    reader_.error(d.pos, std::move(d.message));
    return;
  } catch (const YAML::Exception& e) {
    reader_.error(toSourcePos(e.mark), "YAML error: " + e.msg);
    return;
  }
  readRoot(root);
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
  if (const Field* f = fields->get("token_file"); f != nullptr && !f->value.isNull()) {
    std::string path;
    if (reader_.nonEmptyString(f->value, path)) config_.admin.token_file = std::move(path);
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
  // 0 would refuse every request (header), every body (body) or every keep-alive (idle) at once;
  // a drain of 0 is a legitimate "stop now".
  if (const Field* f = fields->get("header")) reader_.duration(f->value, timeouts.header, false);
  if (const Field* f = fields->get("body")) reader_.duration(f->value, timeouts.body, false);
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
  if (const Field* f = fields->get("max_queue")) {
    ok &= reader_.count(f->value, offload.max_queue, 0, UINT32_MAX);
  }
  if (const Field* f = fields->get("queue_timeout"); f != nullptr && !f->value.isNull()) {
    Duration timeout{0};
    if (reader_.duration(f->value, timeout, false)) {
      offload.queue_timeout = timeout;
    } else {
      ok = false;
    }
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
    LoadResult result = loader.finish();
    if (result.ok()) result.warnings = lintConfig(*result.config);
    return result;
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
