#include "proxy/advice/suggested_config.h"

#include <cstdio>
#include <set>

#include "config/to_json.h"
#include "proxy/advice/path_template.h"
#include "proxy/routing/route_table.h"

namespace loopguard::advice {

using nlohmann::json;

namespace {

constexpr const char* kTopOrder[] = {"listen",    "admin", "log",    "limits",  "timeouts",
                                     "upstreams", "pools", "routes", "offload", "advice"};
constexpr const char* kRouteOrder[] = {"name", "match", "upstream", "pool"};

bool plainKey(const std::string& k) {
  if (k.empty()) return false;
  for (char c : k) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string key(const std::string& k) { return plainKey(k) ? k : json(k).dump(); }

bool isScalar(const json& v) { return !v.is_object() && !v.is_array(); }

// A scalar, or a flow collection of scalars / an empty collection.
bool inline_value(const json& v) {
  if (isScalar(v)) return true;
  if (v.empty()) return true;
  if (v.is_array()) {
    for (const json& x : v) {
      if (!isScalar(x)) return false;
    }
    return true;
  }
  return false;
}

std::string flow(const json& v) {
  if (v.is_string()) return v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (isScalar(v)) return v.dump();
  if (v.is_object()) return "{}";
  std::string out = "[";
  bool first = true;
  for (const json& x : v) {
    if (!first) out += ", ";
    out += flow(x);
    first = false;
  }
  return out + "]";
}

void renderValue(const json& v, int indent, std::string& out);

// `keys` first, in that order, then the rest in the object's (alphabetical) order.
std::vector<std::string> orderedKeys(const json& obj, const char* const* keys, size_t n) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < n; ++i) {
    if (obj.contains(keys[i])) {
      out.push_back(keys[i]);
      seen.insert(keys[i]);
    }
  }
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!seen.count(it.key())) out.push_back(it.key());
  }
  return out;
}

void renderObject(const json& obj, int indent, std::string& out, const std::vector<std::string>& keys,
                  bool first_inline) {
  const std::string pad(static_cast<size_t>(indent) * 2, ' ');
  bool first = true;
  for (const std::string& k : keys) {
    const json& v = obj.at(k);
    if (v.is_null()) continue;
    if (!(first && first_inline)) out += pad;
    first = false;
    out += key(k) + ":";
    if (inline_value(v)) {
      out += " " + flow(v) + "\n";
    } else {
      out += "\n";
      renderValue(v, indent + 1, out);
    }
  }
}

void renderListItem(const json& item, int indent, std::string& out) {
  const std::string pad(static_cast<size_t>(indent) * 2, ' ');
  if (item.is_object() && !item.empty()) {
    out += pad + "- ";
    renderObject(item, indent + 1, out, orderedKeys(item, kRouteOrder, std::size(kRouteOrder)), true);
  } else if (inline_value(item)) {
    out += pad + "- " + flow(item) + "\n";
  } else {
    out += pad + "-\n";
    renderValue(item, indent + 1, out);
  }
}

void renderValue(const json& v, int indent, std::string& out) {
  if (v.is_object()) {
    renderObject(v, indent, out, orderedKeys(v, nullptr, 0), false);
  } else if (v.is_array()) {
    for (const json& item : v) renderListItem(item, indent, out);
  } else {
    out += std::string(static_cast<size_t>(indent) * 2, ' ') + flow(v) + "\n";
  }
}

std::string comment(const std::string& text, int indent) {
  const std::string pad(static_cast<size_t>(indent) * 2, ' ');
  std::string out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out += pad + "# " + text.substr(start, end - start) + "\n";
    start = end + 1;
  }
  return out;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string routeName(const EndpointInfo& e, const std::set<std::string>& taken) {
  std::string base = e.route + "-offload-";
  std::string tail;
  for (char c : e.method + e.path) {
    char l = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    bool ok = (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9');
    if (ok) {
      tail.push_back(l);
    } else if (!tail.empty() && tail.back() != '-') {
      tail.push_back('-');
    }
  }
  while (!tail.empty() && tail.back() == '-') tail.pop_back();
  std::string name = (base + tail).substr(0, 120);
  std::string candidate = name;
  for (int i = 2; taken.count(candidate); ++i) candidate = name + "-" + std::to_string(i);
  return candidate;
}

// A request path that the endpoint's template stands for ("{}" as "1"), to ask the running
// routes where it goes now.
std::string samplePath(const std::string& templ) {
  std::string out;
  for (size_t i = 0; i < templ.size(); ++i) {
    if (templ.compare(i, 2, "{}") == 0) {
      out += "1";
      ++i;
    } else {
      out.push_back(templ[i]);
    }
  }
  return out;
}

}  // namespace

bool endpointMatch(const EndpointInfo& e, json& match) {
  if (e.path == kOtherTemplate || e.path.find("{...}") != std::string::npos) return false;
  match = json::object();
  if (e.path.find("{}") == std::string::npos) {
    match["exact"] = e.path;
  } else {
    std::string regex;
    size_t start = 0;
    while (start <= e.path.size()) {
      size_t hole = e.path.find("{}", start);
      std::string literal = e.path.substr(start, hole == std::string::npos ? std::string::npos : hole - start);
      for (char c : literal) {
        if (std::string_view(".^$|()[]{}*+?\\").find(c) != std::string_view::npos) regex += '\\';
        regex += c;
      }
      if (hole == std::string::npos) break;
      regex += "[^/]+";
      start = hole + 2;
    }
    match["regex"] = regex;
  }
  match["methods"] = json::array({e.method});
  return true;
}

std::string renderConfigYaml(const json& config) {
  std::string out;
  for (const std::string& k : orderedKeys(config, kTopOrder, std::size(kTopOrder))) {
    const json& v = config.at(k);
    if (v.is_null()) continue;
    if (inline_value(v)) {
      out += key(k) + ": " + flow(v) + "\n";
    } else {
      out += key(k) + ":\n";
      renderValue(v, 1, out);
    }
  }
  return out;
}

std::string suggestedConfig(const config::Config& running, const std::vector<EndpointReport>& endpoints) {
  json cfg = config::configToJson(running);
  const bool have_pool = !running.pools.empty();
  const config::Pool* pool = have_pool ? &running.pools.front() : nullptr;
  const std::string pool_name = have_pool ? pool->name : "cpu";
  const uint64_t pool_slots = have_pool ? uint64_t{pool->workers} * pool->concurrency_per_worker : 1;

  // Where each endpoint's requests go now: an endpoint already sent elsewhere (its suggestion
  // applied, say) is not suggested twice.
  routing::RouteTable table(std::make_shared<config::Config>(running));
  std::set<std::string> taken;
  for (const config::Route& r : running.routes) taken.insert(r.name);

  struct Addition {
    json route;
    std::string why;
  };
  std::map<std::string, std::vector<Addition>> before;  // by the route they go ahead of
  std::vector<std::string> unnamed;
  for (const EndpointReport& ep : endpoints) {
    if (ep.verdict.kind != VerdictKind::BlocksLoop) continue;
    const EndpointInfo& e = ep.endpoint;
    const config::Route* origin = nullptr;
    for (const config::Route& r : running.routes) {
      if (r.name == e.route) origin = &r;
    }
    if (origin == nullptr || origin->target_kind != config::TargetKind::Upstream) continue;
    json match;
    if (!endpointMatch(e, match)) {
      unnamed.push_back(e.method + " " + e.path + " on route " + e.route);
      continue;
    }
    const routing::CompiledRoute* now =
        table.match(routing::RequestView{e.method, samplePath(e.path), origin->match.host});
    if (now == nullptr || now->route->name != origin->name) continue;
    if (!origin->match.host.empty()) match["host"] = origin->match.host;
    const std::string name = routeName(e, taken);
    taken.insert(name);
    const json* origin_json = nullptr;
    for (const json& r : cfg["routes"]) {
      if (r["name"] == origin->name) origin_json = &r;
    }
    // Same queue bounds and whole-request budget as the route it leaves.
    json route{{"name", name},
               {"match", match},
               {"pool", pool_name},
               {"limits",
                {{"max_in_flight", pool_slots},
                 {"max_queue", origin->limits.max_queue},
                 {"queue_timeout", (*origin_json)["limits"]["queue_timeout"]},
                 {"overflow_status", origin->limits.overflow_status}}},
               {"buffer_request", true},
               {"buffer_limit", origin->buffer_limit},
               {"timeout", (*origin_json)["timeout"]}};
    std::string why = "loopguard advise: " + e.method + " " + e.path + " blocks the event loop of " +
                      e.upstream + " for ~" + fixed(ep.verdict.blocking_ms, 1) + " ms a request (" +
                      fixed(100 * ep.verdict.loop_share, 1) + "% of its time, confidence " +
                      fixed(ep.verdict.confidence, 3) + ", " + std::to_string(ep.evidence.samples) +
                      " samples);\nserved by pool \"" + pool_name + "\" from here on, off the app's loop.";
    before[origin->name].push_back(Addition{std::move(route), std::move(why)});
  }

  std::string out;
  out += "# Suggested by loopguard's loop-block advisor (GET /advice): the running config";
  out += before.empty() ? ", unchanged:\n# no endpoint was found blocking the app's event loop.\n"
                        : ",\n# plus a route to a pool for each endpoint found blocking the app's event loop.\n";
  if (!have_pool && !before.empty()) {
    out += "# No pool is declared: the routes below name pool \"cpu\"; uncomment the placeholder\n"
           "# under `pools:` and set its command to start workers of your app, then\n"
           "# `loopguard validate --config` this file.\n";
  }
  for (const std::string& u : unnamed) {
    out += "# " + u + " blocks the loop too, but its paths are too many to name one by one.\n";
  }

  json top = cfg;
  json routes = top["routes"];
  top.erase("routes");
  for (const std::string& k : orderedKeys(top, kTopOrder, std::size(kTopOrder))) {
    if (k == "pools" && !have_pool) continue;
    const json& v = top.at(k);
    if (v.is_null()) continue;
    if (k == "offload" || k == "advice") continue;  // after routes
    if (inline_value(v)) {
      out += key(k) + ": " + flow(v) + "\n";
    } else {
      out += key(k) + ":\n";
      renderValue(v, 1, out);
    }
    if (k == "upstreams" && !have_pool && !before.empty()) {
      out += comment(
          "pools:\n"
          "  cpu:\n"
          "    command: [\"python3\", \"-m\", \"uvicorn\", \"app:app\", \"--uds\", \"{socket}\"]  # your app\n"
          "    workers: 1                  # cores - 1: the app's own loop keeps a core\n"
          "    concurrency_per_worker: 1\n"
          "    ready: {path: /, timeout: 30s}",
          0);
    }
  }
  out += "routes:\n";
  for (const json& r : routes) {
    const std::string name = r["name"].get<std::string>();
    if (auto it = before.find(name); it != before.end()) {
      for (const Addition& a : it->second) {
        out += comment(a.why, 1);
        renderListItem(a.route, 1, out);
      }
    }
    renderListItem(r, 1, out);
  }
  for (const char* k : {"offload", "advice"}) {
    if (!top.contains(k) || top[k].is_null()) continue;
    out += std::string(k) + ":\n";
    renderValue(top[k], 1, out);
  }
  return out;
}

}  // namespace loopguard::advice
