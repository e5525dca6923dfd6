#include "config/config.h"

namespace loopguard::config {

std::string Address::toString() const {
  if (kind == Kind::Unix) return "unix:" + path;
  // An IPv6 literal needs brackets so its colons are not read as the port separator.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool Pool::listensOnPort() const {
  auto has_port = [](const std::string& text) { return text.find("{port}") != std::string::npos; };
  for (const std::string& arg : command) {
    if (has_port(arg)) return true;
  }
  for (const auto& [name, value] : env) {
    if (has_port(value)) return true;
  }
  return false;
}

// Linear scans: a config holds a handful of upstreams and pools, and these run at start-up and
// reload, not per request.
const Upstream* Config::findUpstream(const std::string& name) const {
  for (const Upstream& upstream : upstreams) {
    if (upstream.name == name) return &upstream;
  }
  return nullptr;
}

const Pool* Config::findPool(const std::string& name) const {
  for (const Pool& pool : pools) {
    if (pool.name == name) return &pool;
  }
  return nullptr;
}

bool Config::routesToPool(const std::string& name) const {
  for (const Route& route : routes) {
    if (route.target_kind == TargetKind::Pool && route.target == name) return true;
  }
  return false;
}

}  // namespace loopguard::config
