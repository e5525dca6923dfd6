// Immutable route table built once from a config snapshot: first match wins. Regexes are
// compiled here (RE2: linear time, no recursion, so a hostile path cannot stall or crash the
// loop) and never on the data path.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace re2 {
class RE2;
}

namespace loopguard::routing {

// What a route is matched against. `path` is the request-target's path (no query string);
// `host` is the Host header as received (port, if any, is ignored when comparing).
struct RequestView {
  std::string_view method;
  std::string_view path;
  std::string_view host;
};

struct CompiledRoute {
  const config::Route* route = nullptr;  // points into the snapshot the table was built from
  size_t index = 0;                      // position in config.routes
  std::shared_ptr<const re2::RE2> regex; // set for MatchKind::Regex (full match of the path)
};

class RouteTable {
 public:
  // Keeps `config` alive for as long as the table lives. Assumes the config was validated
  // (regexes compile); a regex that still fails to compile never matches.
  explicit RouteTable(std::shared_ptr<const config::Config> config);
  ~RouteTable();

  // First route that matches, or nullptr when none does.
  const CompiledRoute* match(const RequestView& request) const;

  const config::Config& config() const { return *config_; }
  const std::shared_ptr<const config::Config>& configPtr() const { return config_; }
  const std::vector<CompiledRoute>& routes() const { return routes_; }

 private:
  std::shared_ptr<const config::Config> config_;
  std::vector<CompiledRoute> routes_;
};

// Extracts the path of a request-target ("/a/b?x=1" -> "/a/b"; "http://h/a?b" -> "/a";
// "*" -> "*"). Pure function, used by the router and the access log.
std::string_view requestPath(std::string_view target);

}  // namespace loopguard::routing
