#include "proxy/routing/auto_offload.h"

#include <algorithm>

#include "proxy/advice/path_template.h"

namespace loopguard::routing {

void AutoOffload::appendKey(std::string& out, std::string_view route, std::string_view method,
                            std::string_view path) {
  out.append(route);
  out.push_back('\0');
  out.append(method);
  out.push_back('\0');
  out.append(path);
}

void AutoOffload::configure(std::vector<Rule> rules, uint64_t min_samples) {
  rules_ = std::move(rules);
  min_samples_ = min_samples;
  auto listed = [this](const std::string& route) {
    return std::any_of(rules_.begin(), rules_.end(),
                       [&](const Rule& r) { return r.route == route; });
  };
  std::erase_if(moved_, [&](const auto& kv) { return !listed(kv.second.route); });
  for (auto& [key, m] : moved_) {
    for (const Rule& r : rules_) {
      if (r.route == m.route) m.pool = r.pool;  // the pool may have been changed
    }
  }
  std::erase_if(candidates_, [&](const auto& kv) {
    return !listed(kv.first.substr(0, kv.first.find('\0')));
  });
  recount();
}

void AutoOffload::recount() {
  moved_count_.assign(rules_.size(), 0);
  for (const auto& [key, m] : moved_) {
    for (size_t i = 0; i < rules_.size(); ++i) {
      if (rules_[i].route == m.route) ++moved_count_[i];
    }
  }
}

bool AutoOffload::qualifies(const Rule& rule, const BlockingVerdict& v) const {
  return v.route == rule.route && v.samples >= min_samples_ &&
         v.confidence >= rule.min_confidence && v.path != advice::kOtherTemplate;
}

std::vector<MovedEndpoint> AutoOffload::review(const Rule& rule,
                                               const std::vector<BlockingVerdict>& blocking,
                                               int64_t now_ms, int64_t wall_ms) {
  std::vector<MovedEndpoint> out;
  std::string key;
  for (const BlockingVerdict& v : blocking) {
    if (!qualifies(rule, v)) continue;
    key.clear();
    appendKey(key, v.route, v.method, v.path);
    if (moved_.count(key) != 0) continue;
    auto [it, fresh] = candidates_.try_emplace(key, Candidate{now_ms, now_ms});
    Candidate& c = it->second;
    c.seen_ms = now_ms;
    if (fresh || now_ms - c.first_ms < kConfirmMs) continue;
    MovedEndpoint m{v.route, v.method, v.path, rule.pool, wall_ms, v};
    moved_.emplace(key, m);
    candidates_.erase(it);
    out.push_back(std::move(m));
  }
  // A candidate of this route that this look did not find qualifying starts over.
  std::string prefix = rule.route;
  prefix.push_back('\0');
  std::erase_if(candidates_, [&](const auto& kv) {
    return kv.second.seen_ms != now_ms && kv.first.starts_with(prefix);
  });
  if (!out.empty()) recount();
  return out;
}

bool AutoOffload::moved(std::string_view route, std::string_view method,
                        std::string_view target) {
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].route != route) continue;
    if (moved_count_[i] == 0) return false;
    key_.clear();
    appendKey(key_, route, method, {});
    advice::appendPathTemplate(key_, target);
    return moved_.count(key_) != 0;
  }
  return false;
}

size_t AutoOffload::reset() {
  size_t n = moved_.size();
  moved_.clear();
  candidates_.clear();
  recount();
  return n;
}

std::vector<const MovedEndpoint*> AutoOffload::movedEndpoints() const {
  std::vector<const MovedEndpoint*> out;
  out.reserve(moved_.size());
  for (const auto& [key, m] : moved_) out.push_back(&m);
  std::sort(out.begin(), out.end(), [](const MovedEndpoint* a, const MovedEndpoint* b) {
    return a->since_ms != b->since_ms ? a->since_ms < b->since_ms : a->path < b->path;
  });
  return out;
}

const MovedEndpoint* AutoOffload::find(std::string_view route, std::string_view method,
                                       std::string_view path) const {
  std::string key;
  appendKey(key, route, method, path);
  auto it = moved_.find(key);
  return it == moved_.end() ? nullptr : &it->second;
}

size_t AutoOffload::movedCount(std::string_view route) const {
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].route == route) return moved_count_[i];
  }
  return 0;
}

}  // namespace loopguard::routing
