// Upstreams and pools: the two kinds of route target.
#include <algorithm>

#include "config/schema_loader.h"
#include "config/values.h"

namespace loopguard::config {
namespace {

// Catches a typo (an extra zero) before it turns into a fork bomb.
constexpr uint64_t kMaxWorkers = 4096;

constexpr std::string_view kUpstreamKeys[] = {
    "endpoints",            "balance",      "connect_timeout", "response_timeout", "read_timeout",
    "max_idle_connections", "idle_timeout", "resolve_every"};
constexpr std::string_view kPoolKeys[] = {
    "command",    "workers",         "concurrency_per_worker", "env",     "workdir",
    "ready",      "request_timeout", "max_requests",           "max_rss", "restart_backoff",
    "slow_after", "on_slow"};
constexpr std::string_view kReadyKeys[] = {"path", "timeout"};
constexpr std::string_view kBackoffKeys[] = {"initial", "max"};

}  // namespace

void SchemaLoader::readUpstreams(const Item& item) {
  auto entries = reader_.namedMapping(item, "upstream");
  if (!entries) return;
  for (const Field& entry : entries->list) readUpstream(entry);
}

void SchemaLoader::readUpstream(const Field& entry) {
  Upstream upstream;
  upstream.name = entry.key;
  upstream.pos = entry.key_pos;
  upstream_names_.insert(entry.key);
  if (!isValidName(entry.key)) {
    reader_.error(entry.key_pos, "bad upstream name " + quoted(entry.key) +
                                     ": use letters, digits, '_', '.' and '-'");
  }
  auto fields = reader_.mapping(entry.value, "upstream " + quoted(entry.key), kUpstreamKeys);
  if (!fields) return;
  if (const Field* f = fields->get("endpoints")) {
    if (auto items = reader_.sequence(f->value, "[\"127.0.0.1:8000\"]")) {
      if (items->empty()) reader_.error(f->value, "must list at least one endpoint");
      for (const Item& element : *items) {
        Address address;
        if (!reader_.address(element, address)) continue;
        if (address.kind == Address::Kind::Tcp && address.port == 0) {
          reader_.error(element, "port 0 cannot be connected to");
        } else if (std::find(upstream.endpoints.begin(), upstream.endpoints.end(), address) !=
                   upstream.endpoints.end()) {
          reader_.error(element, "duplicate endpoint " + quoted(address.toString()));
        } else {
          upstream.endpoints.push_back(std::move(address));
        }
      }
    }
  } else {
    reader_.error(entry.key_pos, entry.value.path + ": missing required key \"endpoints\"");
  }
  if (const Field* f = fields->get("balance")) {
    std::string balance;
    if (reader_.string(f->value, balance)) {
      if (balance == "least_request") {
        upstream.balance = Balance::LeastRequest;
      } else if (balance == "round_robin") {
        upstream.balance = Balance::RoundRobin;
      } else {
        reader_.error(f->value, "unknown balance " + quoted(balance) +
                                    " (expected one of: least_request, round_robin)");
      }
    }
  }
  if (const Field* f = fields->get("connect_timeout")) {
    reader_.duration(f->value, upstream.connect_timeout, false);
  }
  if (const Field* f = fields->get("response_timeout")) {
    reader_.duration(f->value, upstream.response_timeout, false);
  }
  if (const Field* f = fields->get("read_timeout")) {
    reader_.duration(f->value, upstream.read_timeout, false);
  }
  if (const Field* f = fields->get("max_idle_connections")) {
    reader_.count(f->value, upstream.max_idle_connections, 0, UINT32_MAX);
  }
  // An idle timeout of 0 would make pooling pointless; max_idle_connections: 0 says that.
  if (const Field* f = fields->get("idle_timeout")) {
    reader_.duration(f->value, upstream.idle_timeout, false);
  }
  if (const Field* f = fields->get("resolve_every")) {
    reader_.duration(f->value, upstream.resolve_every, false);
  }
  config_.upstreams.push_back(std::move(upstream));
}

void SchemaLoader::readPools(const Item& item) {
  auto entries = reader_.namedMapping(item, "pool");
  if (!entries) return;
  for (const Field& entry : entries->list) readPool(entry);
}

void SchemaLoader::readPool(const Field& entry) {
  Pool pool;
  pool.name = entry.key;
  pool.pos = entry.key_pos;
  pool_names_.insert(entry.key);
  if (!isValidName(entry.key)) {
    reader_.error(entry.key_pos,
                  "bad pool name " + quoted(entry.key) + ": use letters, digits, '_', '.' and '-'");
  }
  auto fields = reader_.mapping(entry.value, "pool " + quoted(entry.key), kPoolKeys);
  if (!fields) return;
  const Field* command = fields->get("command");
  if (command != nullptr) {
    readCommand(command->value, pool.command);
  } else {
    reader_.error(entry.key_pos, entry.value.path + ": missing required key \"command\"");
  }
  uint64_t number = 0;
  if (const Field* f = fields->get("workers")) {
    if (reader_.count(f->value, number, 1, kMaxWorkers)) {
      pool.workers = static_cast<uint32_t>(number);
    }
  }
  if (const Field* f = fields->get("concurrency_per_worker")) {
    if (reader_.count(f->value, number, 1, UINT32_MAX)) {
      pool.concurrency_per_worker = static_cast<uint32_t>(number);
    }
  }
  const Field* env = fields->get("env");
  if (env != nullptr) readEnv(env->value, pool.env);
  if (!pool.command.empty()) checkWorkerAddress(command->value, pool);
  if (const Field* f = fields->get("workdir")) reader_.nonEmptyString(f->value, pool.workdir);
  if (const Field* f = fields->get("ready")) {
    if (auto ready = reader_.mapping(f->value, "ready", kReadyKeys)) {
      if (const Field* p = ready->get("path"); p != nullptr && !p->value.isNull()) {
        std::string path;
        if (reader_.string(p->value, path)) {
          if (path.starts_with("/")) {
            pool.ready.path = path;
          } else {
            reader_.error(p->value, "must start with \"/\", got " + quoted(path));
          }
        }
      }
      if (const Field* t = ready->get("timeout")) {
        reader_.duration(t->value, pool.ready.timeout, false);
      }
    }
  }
  if (const Field* f = fields->get("request_timeout")) {
    reader_.duration(f->value, pool.request_timeout, false);
  }
  if (const Field* f = fields->get("max_requests")) {
    reader_.count(f->value, pool.max_requests, 0, UINT64_MAX);
  }
  if (const Field* f = fields->get("max_rss")) reader_.size(f->value, pool.max_rss, 0);
  if (const Field* f = fields->get("restart_backoff")) {
    if (auto backoff = reader_.mapping(f->value, "restart_backoff", kBackoffKeys)) {
      Backoff& b = pool.restart_backoff;
      bool ok = true;
      if (const Field* i = backoff->get("initial")) {
        ok &= reader_.duration(i->value, b.initial, false);
      }
      if (const Field* m = backoff->get("max")) {
        ok &= reader_.duration(m->value, b.max, false);
      }
      if (ok && b.initial > b.max) {
        reader_.error(f->value, "initial (" + formatDuration(b.initial) +
                                    ") must not be greater than max (" + formatDuration(b.max) +
                                    ")");
      }
    }
  }
  if (const Field* f = fields->get("slow_after")) reader_.duration(f->value, pool.slow_after, true);
  if (const Field* f = fields->get("on_slow")) {
    if (reader_.stringList(f->value, pool.on_slow, true) && !pool.on_slow.empty() &&
        pool.on_slow[0].empty()) {
      reader_.error(f->value, "the program (first element) must not be empty");
    }
  }
  config_.pools.push_back(std::move(pool));
}

void SchemaLoader::readCommand(const Item& item, std::vector<std::string>& out) {
  std::vector<std::string> command;
  if (!reader_.stringList(item, command, false)) return;
  if (command[0].empty()) {
    reader_.error(item, "the program (first element) must not be empty");
    return;
  }
  out = std::move(command);
}

// The worker must be told where to listen, or loopguard cannot reach it: {socket} or {port} in
// its command line (uvicorn --uds {socket}) or its environment (Node's PORT: "{port}").
void SchemaLoader::checkWorkerAddress(const Item& command, Pool& pool) {
  bool socket = false;
  bool port = false;
  auto scan = [&](const std::string& text) {
    socket |= text.find("{socket}") != std::string::npos;
    port |= text.find("{port}") != std::string::npos;
  };
  for (const std::string& arg : pool.command) scan(arg);
  for (const auto& [name, value] : pool.env) scan(value);
  if (!socket && !port) {
    reader_.error(command,
                  "must contain {socket} or {port} (here or in env, e.g. env: {PORT: \"{port}\"}), "
                  "so each worker listens where loopguard connects");
    pool.command.clear();
  } else if (socket && port) {
    reader_.error(command, "use one of {socket} or {port} (in command and env), not both");
    pool.command.clear();
  }
}

void SchemaLoader::readEnv(const Item& item, std::map<std::string, std::string>& out) {
  auto fields = reader_.namedMapping(item, "env variable");
  if (!fields) return;
  for (const Field& f : fields->list) {
    if (f.key.empty() || f.key.find('=') != std::string::npos ||
        f.key.find('\0') != std::string::npos) {
      reader_.error(f.key_pos, item.path + ": bad environment variable name " + quoted(f.key));
      continue;
    }
    std::string value;
    if (reader_.string(f.value, value)) out[f.key] = std::move(value);
  }
}

}  // namespace loopguard::config
