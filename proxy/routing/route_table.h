// Immutable route table built once from a config snapshot: first match wins. Regexes are
// compiled here (RE2: linear time, no recursion, so a hostile path cannot stall or crash the
// loop) and never on the data path.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "proxy/http/request_target.h"  // requestHost(): the host a request is routed on

namespace re2 {
class RE2;
}

namespace loopguard::routing {

// What a route is matched against. `path` is the request-target's path (no query string),
// normalised (RoutingPath); `host` is the request's host (http::requestHost: the absolute-form
// target's authority, else the Host header; a port is ignored when comparing). `app_path`, when
// set and different from `path`, is the same path as an app that decodes but does not resolve
// dot segments sees it: a request goes to the first route in table order that matches either
// form, so neither "/x/../cpu/h" nor "/cpu/../x" can reach a later (catch-all) route while the
// app acts on a form an earlier route would have taken.
struct RequestView {
  std::string_view method;
  std::string_view path;
  std::string_view host;
  std::string_view app_path = {};
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

// The forms of a request-target's path that routing compares (see RequestView). Owns their
// storage: views stay valid while it lives and is not assigned again. Paths with nothing to
// decode or resolve (the common case) are used as they are, without a copy.
class RoutingPath {
 public:
  // Null when the path can be routed; else why it cannot (the request gets 400).
  const char* assign(std::string_view target);
  std::string_view normalized() const { return normalized_view_; }
  std::string_view appPath() const { return app_view_; }

 private:
  std::string normalized_;
  std::string decoded_;
  std::string_view normalized_view_;
  std::string_view app_view_;
};

// Extracts the path of a request-target ("/a/b?x=1" -> "/a/b"; "http://h/a?b" -> "/a";
// "*" -> "*"). Pure function, used by the router and the access log.
std::string_view requestPath(std::string_view target);

}  // namespace loopguard::routing
