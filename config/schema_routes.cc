// Routes: match, target, limits and buffering, in first-match order.
#include <re2/re2.h>

#include <algorithm>
#include <tuple>

#include "config/schema_loader.h"
#include "config/values.h"

namespace loopguard::config {
namespace {

constexpr size_t kMaxRouteNameLength = 128;

constexpr std::string_view kRouteKeys[] = {"name",   "match",          "upstream",     "pool",
                                           "limits", "buffer_request", "buffer_limit", "timeout"};
constexpr std::string_view kMatchKeys[] = {"prefix", "exact", "regex", "methods", "host"};
constexpr std::string_view kRouteLimitsKeys[] = {
    "max_in_flight", "max_in_flight_min", "max_in_flight_max", "max_queue",
    "queue_timeout", "queue_order",       "overflow_status"};

std::string toUpper(std::string text) {
  for (char& c : text) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return text;
}

std::string toLower(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return text;
}

// Route names end up in metric labels, log lines and JSON error bodies: keep them to visible
// ASCII without quotes or backslashes so none of those need escaping.
bool isValidRouteName(std::string_view name) {
  if (name.empty() || name.size() > kMaxRouteNameLength) return false;
  for (char c : name) {
    if (c <= ' ' || c > '~' || c == '"' || c == '\\') return false;
  }
  return true;
}

}  // namespace

void SchemaLoader::readRoutes(const Item& item) {
  auto items = reader_.sequence(item, "[{name: api, match: {prefix: /}, upstream: app}]");
  if (!items) {
    routes_not_a_list_ = true;
    return;
  }
  route_items_ = items->size();
  for (size_t i = 0; i < items->size(); ++i) readRoute((*items)[i], i);
}

void SchemaLoader::readRoute(const Item& item, size_t index) {
  Route route;
  route.pos = item.pos;
  // An unnamed route is called by its place in the list, which no other route can be unless its
  // name is literally that (then it is reported as a duplicate, which it is).
  route.name = "routes[" + std::to_string(index) + "]";
  auto fields = reader_.mapping(item, "route", kRouteKeys);
  if (!fields) return;

  if (const Field* f = fields->get("name")) {
    std::string name;
    if (reader_.string(f->value, name)) {
      if (!isValidRouteName(name)) {
        reader_.error(f->value, "bad route name " + quoted(name) +
                                    ": use 1-128 visible ASCII characters without quotes or "
                                    "backslashes");
      }
      route.name = name;
    }
  }
  if (auto [it, inserted] = route_name_lines_.emplace(route.name, item.pos.line); !inserted) {
    const Field* f = fields->get("name");
    reader_.error(f != nullptr ? f->value : item, "duplicate route name " + quoted(route.name) +
                                                      " (first at line " +
                                                      std::to_string(it->second) + ")");
  }

  if (const Field* f = fields->get("match")) {
    readMatch(f->value, route.match);
  } else {
    reader_.error(item, "missing required key \"match\"");
  }

  const Field* upstream = fields->get("upstream");
  const Field* pool = fields->get("pool");
  if (upstream != nullptr && pool != nullptr) {
    // Point at whichever of the two comes second: that is the one that clashes.
    const SourcePos& u = upstream->key_pos;
    const SourcePos& p = pool->key_pos;
    const Field* later = std::tie(u.line, u.column) > std::tie(p.line, p.column) ? upstream : pool;
    reader_.error(later->key_pos, item.path + ": has both upstream and pool; use exactly one");
  } else if (upstream == nullptr && pool == nullptr) {
    reader_.error(item, "needs a target: exactly one of upstream or pool");
  } else {
    const bool is_pool = pool != nullptr;
    const Field* target = is_pool ? pool : upstream;
    route.target_kind = is_pool ? TargetKind::Pool : TargetKind::Upstream;
    if (reader_.nonEmptyString(target->value, route.target)) {
      const std::set<std::string>& known = is_pool ? pool_names_ : upstream_names_;
      if (known.count(route.target) == 0) {
        reader_.error(target->value, std::string("no ") + (is_pool ? "pool" : "upstream") +
                                         " named " + quoted(route.target) + " (" + namesOf(known) +
                                         ")");
      }
    }
  }
  // A pool worker is the scarce resource, so by default it is taken only once the whole body is
  // in; upstream connections are cheap enough to stream through.
  route.buffer_request = route.target_kind == TargetKind::Pool;

  if (const Field* f = fields->get("limits")) readRouteLimits(f->value, route.limits);
  if (const Field* f = fields->get("buffer_request")) {
    reader_.boolean(f->value, route.buffer_request);
  }
  if (const Field* f = fields->get("buffer_limit")) reader_.size(f->value, route.buffer_limit, 1);
  if (const Field* f = fields->get("timeout")) reader_.duration(f->value, route.timeout, true);
  config_.routes.push_back(std::move(route));
}

void SchemaLoader::readMatch(const Item& item, RouteMatch& out) {
  auto fields = reader_.mapping(item, "route match", kMatchKeys);
  if (!fields) return;
  const Field* kind_field = nullptr;
  for (const Field& f : fields->list) {
    if (f.key != "prefix" && f.key != "exact" && f.key != "regex") continue;
    if (kind_field != nullptr) {
      reader_.error(f.key_pos, item.path + ": has both " + kind_field->key + " and " + f.key +
                                   "; use exactly one of prefix, exact or regex");
      continue;
    }
    kind_field = &f;
  }
  if (kind_field == nullptr) {
    reader_.error(item, "needs exactly one of prefix, exact or regex");
  } else {
    std::string pattern;
    if (reader_.nonEmptyString(kind_field->value, pattern)) {
      if (kind_field->key == "regex") {
        out.kind = MatchKind::Regex;
        RE2 re(pattern, RE2::Quiet);
        if (!re.ok()) {
          reader_.error(kind_field->value, "bad regex " + quoted(pattern) + ": " + re.error());
        }
      } else {
        out.kind = kind_field->key == "prefix" ? MatchKind::Prefix : MatchKind::Exact;
        if (!pattern.starts_with("/")) {
          reader_.error(kind_field->value, "must start with \"/\", got " + quoted(pattern));
        }
      }
      out.pattern = std::move(pattern);
    }
  }
  if (const Field* f = fields->get("methods")) {
    std::vector<std::string> methods;
    if (auto items = reader_.sequence(f->value, "[GET, POST]")) {
      // An explicit empty list reads like "no method": omit the key to allow every method.
      if (items->empty()) {
        reader_.error(f->value, "must not be empty (omit it to allow any method)");
      }
      for (const Item& element : *items) {
        std::string method;
        if (!reader_.string(element, method)) continue;
        if (!isHttpToken(method)) {
          reader_.error(element, "bad HTTP method " + quoted(method));
          continue;
        }
        // Methods are case-sensitive on the wire and every standard one is upper case; "get"
        // in a config means GET.
        method = toUpper(std::move(method));
        if (std::find(methods.begin(), methods.end(), method) == methods.end()) {
          methods.push_back(std::move(method));
        }
      }
      out.methods = std::move(methods);
    }
  }
  if (const Field* f = fields->get("host")) {
    std::string host;
    if (reader_.nonEmptyString(f->value, host)) {
      // The request's port is ignored when matching, so a port here could never match.
      bool bracketed = host.starts_with("[") && host.ends_with("]");
      if (host.find_first_of(" \t/") != std::string::npos) {
        reader_.error(f->value,
                      "bad host " + quoted(host) + " (expected a name such as api.example.com)");
      } else if (!bracketed && host.find(':') != std::string::npos) {
        reader_.error(f->value, "host " + quoted(host) +
                                    " must not include a port (ports are ignored when matching)");
      } else {
        out.host = toLower(std::move(host));
      }
    }
  }
}

void SchemaLoader::readRouteLimits(const Item& item, RouteLimits& out) {
  auto fields = reader_.mapping(item, "route limits", kRouteLimitsKeys);
  if (!fields) return;
  if (const Field* f = fields->get("max_in_flight"); f != nullptr && !f->value.isNull()) {
    if (f->value.node.IsScalar() && f->value.node.Scalar() == "auto") {
      out.max_in_flight_auto = true;
    } else if (f->value.node.IsScalar() &&
               f->value.node.Scalar().find_first_not_of("0123456789-") != std::string::npos) {
      reader_.error(f->value,
                    "expected a whole number or auto, got " + quoted(f->value.node.Scalar()));
    } else {
      // 0 would admit nothing, ever; unlimited is spelt by leaving the key out.
      uint64_t value = 0;
      if (reader_.count(f->value, value, 1, UINT32_MAX)) out.max_in_flight = value;
    }
  }
  readAdaptiveBounds(*fields, out);
  if (const Field* f = fields->get("max_queue")) {
    reader_.count(f->value, out.max_queue, 0, UINT32_MAX);
  }
  // A zero queue timeout would turn every queued request into a 503; max_queue: 0 says "no
  // queue" explicitly.
  if (const Field* f = fields->get("queue_timeout")) {
    reader_.duration(f->value, out.queue_timeout, false);
  }
  if (const Field* f = fields->get("queue_order")) {
    std::string order;
    if (reader_.string(f->value, order)) {
      if (order == "fifo") {
        out.queue_order = QueueOrder::Fifo;
      } else if (order == "lifo") {
        out.queue_order = QueueOrder::Lifo;
      } else if (order == "adaptive") {
        out.queue_order = QueueOrder::Adaptive;
      } else {
        reader_.error(f->value, "unknown queue_order " + quoted(order) +
                                    " (expected one of: fifo, lifo, adaptive)");
      }
    }
  }
  if (const Field* f = fields->get("overflow_status")) {
    uint64_t status = 0;
    if (reader_.count(f->value, status, 0, 999)) {
      if (status == 503 || status == 429) {
        out.overflow_status = static_cast<int>(status);
      } else {
        reader_.error(f->value, "must be 503 or 429, got " + std::to_string(status));
      }
    }
  }
}

// max_in_flight_min / max_in_flight_max bound an adaptive limit; next to a fixed one they would
// read as if they clamped it, so they are refused there rather than silently ignored.
void SchemaLoader::readAdaptiveBounds(const Fields& fields, RouteLimits& out) {
  const Field* min = fields.get("max_in_flight_min");
  const Field* max = fields.get("max_in_flight_max");
  for (const Field* f : {min, max}) {
    if (f != nullptr && !out.max_in_flight_auto) {
      reader_.error(f->value, "applies only to max_in_flight: auto");
    }
  }
  if (!out.max_in_flight_auto) return;
  bool min_ok = min == nullptr || reader_.count(min->value, out.max_in_flight_min, 1, UINT32_MAX);
  bool max_ok = max == nullptr || reader_.count(max->value, out.max_in_flight_max, 1, UINT32_MAX);
  if (min_ok && max_ok && out.max_in_flight_min > out.max_in_flight_max) {
    const Field* later = max != nullptr ? max : min;
    reader_.error(later->value, "max_in_flight_min (" + std::to_string(out.max_in_flight_min) +
                                    ") must not exceed max_in_flight_max (" +
                                    std::to_string(out.max_in_flight_max) + ")");
  }
}

}  // namespace loopguard::config
