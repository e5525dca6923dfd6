#include "config/lint.h"

#include <algorithm>
#include <string>

#include "config/values.h"

namespace loopguard::config {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool sameHost(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lower(x) == lower(y);
         });
}

// Every request `later` matches is matched by `earlier` too (decided only where that is
// certain: a regex is never assumed to cover anything, except that prefix "/" covers every path).
bool covers(const RouteMatch& earlier, const RouteMatch& later) {
  if (!earlier.host.empty() && !(later.host.size() > 0 && sameHost(earlier.host, later.host))) {
    return false;
  }
  if (!earlier.methods.empty()) {
    if (later.methods.empty()) return false;
    for (const std::string& m : later.methods) {
      if (std::find(earlier.methods.begin(), earlier.methods.end(), m) == earlier.methods.end()) {
        return false;
      }
    }
  }
  switch (earlier.kind) {
    case MatchKind::Prefix:
      if (later.kind == MatchKind::Regex) return earlier.pattern == "/";
      return later.pattern.starts_with(earlier.pattern);
    case MatchKind::Exact:
      return later.kind == MatchKind::Exact && later.pattern == earlier.pattern;
    case MatchKind::Regex:
      return false;
  }
  return false;
}

std::string describe(const RouteMatch& m) {
  std::string out;
  switch (m.kind) {
    case MatchKind::Prefix:
      out = "prefix " + quoted(m.pattern);
      break;
    case MatchKind::Exact:
      out = "exact " + quoted(m.pattern);
      break;
    case MatchKind::Regex:
      out = "regex " + quoted(m.pattern);
      break;
  }
  if (m.methods.empty() && m.host.empty()) out += ", any method and host";
  return out;
}

void warn(std::vector<ConfigError>& out, const Config& c, SourcePos pos, std::string message) {
  out.push_back(ConfigError{c.source_path, pos.line, pos.column, "warning: " + message});
}

void shadowedRoutes(const Config& c, std::vector<ConfigError>& out) {
  for (size_t j = 1; j < c.routes.size(); ++j) {
    for (size_t i = 0; i < j; ++i) {
      const Route& earlier = c.routes[i];
      const Route& later = c.routes[j];
      if (!covers(earlier.match, later.match)) continue;
      warn(out, c, later.pos,
           "route " + quoted(later.name) + " is never used: route " + quoted(earlier.name) +
               " (line " + std::to_string(earlier.pos.line) + ", " + describe(earlier.match) +
               ") comes first and matches every request it would; routes are tried in order "
               "and the first match wins, so put the more specific route first");
      break;
    }
  }
}

void unusedPools(const Config& c, std::vector<ConfigError>& out) {
  for (const Pool& pool : c.pools) {
    if (c.routesToPool(pool.name)) continue;
    if (c.offload && c.offload->pool == pool.name) continue;
    warn(out, c, pool.pos,
         "pool " + quoted(pool.name) +
             " is not used: no route sends to it (and it is not offload.pool), so its workers "
             "are never started");
  }
}

void limitsAboveCapacity(const Config& c, std::vector<ConfigError>& out) {
  for (const Route& route : c.routes) {
    if (route.target_kind != TargetKind::Pool || !route.limits.max_in_flight) continue;
    const Pool* pool = c.findPool(route.target);
    if (pool == nullptr) continue;
    uint64_t capacity = uint64_t{pool->workers} * pool->concurrency_per_worker;
    uint64_t limit = *route.limits.max_in_flight;
    if (limit <= capacity) continue;
    warn(out, c, route.pos,
         "route " + quoted(route.name) + ": max_in_flight " + std::to_string(limit) +
             " is above the capacity of pool " + quoted(pool->name) + " (workers " +
             std::to_string(pool->workers) + " x concurrency_per_worker " +
             std::to_string(pool->concurrency_per_worker) + " = " + std::to_string(capacity) +
             "): requests beyond " + std::to_string(capacity) +
             " wait for a worker in the route's queue anyway; set max_in_flight to at most " +
             std::to_string(capacity) + " or add workers");
  }
}

}  // namespace

std::vector<ConfigError> lintConfig(const Config& config) {
  std::vector<ConfigError> out;
  shadowedRoutes(config, out);
  unusedPools(config, out);
  limitsAboveCapacity(config, out);
  std::stable_sort(out.begin(), out.end(), [](const ConfigError& a, const ConfigError& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  return out;
}

}  // namespace loopguard::config
