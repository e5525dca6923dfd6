#include "proxy/advice/endpoint_registry.h"

#include "proxy/advice/path_template.h"

namespace loopguard::advice {

void EndpointRegistry::makeKey(std::string_view route, std::string_view method,
                               std::string_view target) {
  key_.assign(route);
  key_.push_back('\0');
  key_.append(method);
  key_.push_back('\0');
  appendPathTemplate(key_, target);
}

bool EndpointRegistry::find(std::string_view route, std::string_view method,
                            std::string_view target, EndpointId& out) {
  makeKey(route, method, target);
  auto it = ids_.find(key_);
  if (it == ids_.end()) {
    auto full = templates_per_route_.find(std::string(route));
    if (full == templates_per_route_.end() || full->second < kMaxTemplatesPerRoute) return false;
    key_.resize(route.size() + method.size() + 2);
    key_.append(kOtherTemplate);
    it = ids_.find(key_);
    if (it == ids_.end()) return false;
  }
  out = it->second;
  return true;
}

EndpointId EndpointRegistry::intern(std::string_view route, std::string_view method,
                                    std::string_view target, std::string_view upstream) {
  makeKey(route, method, target);
  const size_t path_at = route.size() + method.size() + 2;
  if (auto it = ids_.find(key_); it != ids_.end()) {
    EndpointInfo& e = endpoints_[it->second];
    if (e.upstream != upstream) e.upstream.assign(upstream);  // the route was reconfigured
    return it->second;
  }
  size_t& count = templates_per_route_[std::string(route)];
  if (count >= kMaxTemplatesPerRoute) {
    key_.resize(path_at);
    key_.append(kOtherTemplate);
    if (auto it = ids_.find(key_); it != ids_.end()) return it->second;
    return add(route, method, kOtherTemplate, upstream);
  }
  ++count;
  return add(route, method, std::string_view(key_).substr(path_at), upstream);
}

EndpointId EndpointRegistry::add(std::string_view route, std::string_view method,
                                 std::string_view path, std::string_view upstream) {
  auto id = static_cast<EndpointId>(endpoints_.size());
  endpoints_.push_back(EndpointInfo{std::string(route), std::string(method), std::string(path),
                                    std::string(upstream)});
  ids_.emplace(key_, id);
  return id;
}

void EndpointRegistry::clear() {
  ids_.clear();
  templates_per_route_.clear();
  endpoints_.clear();
}

}  // namespace loopguard::advice
