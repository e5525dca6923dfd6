#include "proxy/routing/route_table.h"

#include <re2/re2.h>

#include "proxy/http/path_normalize.h"

#include <cstddef>
#include <utility>

namespace loopguard::routing {
namespace {

// The host part of a Host header (or of a configured host pattern), as a view into it:
// "Api.Example.com:8080" -> "Api.Example.com", "[::1]:8080" -> "::1", "example.com." ->
// "example.com" (a fully qualified name with its root dot names the same host). A bare IPv6
// literal without brackets is not valid in a Host header, but in a pattern it is what an operator
// would write, so several colons mean "no port here".
std::string_view hostWithoutPort(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return host;  // malformed: matches no sane pattern
    return host.substr(1, close - 1);
  }
  const size_t colon = host.find(':');
  if (colon != std::string_view::npos && host.find(':', colon + 1) == std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);
  return host;
}

bool methodMatches(const config::RouteMatch& match, std::string_view method) {
  if (match.methods.empty()) return true;
  for (const std::string& allowed : match.methods) {
    if (allowed == method) return true;
  }
  return false;
}

bool hostMatches(const config::RouteMatch& match, std::string_view host) {
  if (match.host.empty()) return true;
  // Host names are case-insensitive (RFC 3986 3.2.2); compared locale-free.
  return http::equalsIgnoreCase(hostWithoutPort(match.host), hostWithoutPort(host));
}

bool pathMatches(const CompiledRoute& compiled, std::string_view path) {
  const config::RouteMatch& match = compiled.route->match;
  switch (match.kind) {
    case config::MatchKind::Prefix:
      return path.starts_with(match.pattern);
    case config::MatchKind::Exact:
      return path == match.pattern;
    case config::MatchKind::Regex:
      return compiled.regex && compiled.regex->ok() && RE2::FullMatch(path, *compiled.regex);
  }
  return false;
}

// scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )  (RFC 3986 3.1)
bool isScheme(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = http::toLowerAscii(s[i]);
    const bool alpha = c >= 'a' && c <= 'z';
    const bool other = (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
    if (!alpha && (i == 0 || !other)) return false;
  }
  return true;
}

}  // namespace

RouteTable::RouteTable(std::shared_ptr<const config::Config> config) : config_(std::move(config)) {
  routes_.reserve(config_->routes.size());
  for (size_t i = 0; i < config_->routes.size(); ++i) {
    const config::Route& route = config_->routes[i];
    CompiledRoute compiled;
    compiled.route = &route;
    compiled.index = i;
    if (route.match.kind == config::MatchKind::Regex) {
      // Quiet: validation already reported a bad pattern with its line and column; a second,
      // unstructured message from RE2 on stderr would only confuse. A pattern that does not
      // compile stays !ok() and never matches.
      compiled.regex = std::make_shared<const re2::RE2>(route.match.pattern, re2::RE2::Quiet);
    }
    routes_.push_back(std::move(compiled));
  }
}

RouteTable::~RouteTable() = default;

const CompiledRoute* RouteTable::match(const RequestView& request) const {
  const bool two_forms = !request.app_path.empty() && request.app_path != request.path;
  // Cheapest checks first: the regex, if any, runs only for a route whose method and host fit.
  for (const CompiledRoute& compiled : routes_) {
    const config::RouteMatch& match = compiled.route->match;
    if (!methodMatches(match, request.method)) continue;
    if (!hostMatches(match, request.host)) continue;
    if (pathMatches(compiled, request.path)) return &compiled;
    if (two_forms && pathMatches(compiled, request.app_path)) return &compiled;
  }
  return nullptr;
}

namespace {

// Whether a path needs decoding or resolving at all: no escape, no backslash, no byte that
// decodePath refuses, no empty or dot segment.
bool plainPath(std::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  for (size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (c == '%' || c == '\\' || c <= 0x20 || c >= 0x7f) return false;
    if (c == '/' && i + 1 < path.size() && (path[i + 1] == '/' || path[i + 1] == '.')) return false;
  }
  return true;
}

}  // namespace

const char* RoutingPath::assign(std::string_view target) {
  const std::string_view raw = requestPath(target);
  app_view_ = {};
  if (raw == "*" || plainPath(raw)) {
    normalized_view_ = raw;
    return nullptr;
  }
  const char* why = nullptr;
  if (http::normalizePath(raw, normalized_, &why) != http::PathStatus::Ok) return why;
  if (http::decodePath(raw, decoded_, &why) != http::PathStatus::Ok) return why;
  normalized_view_ = normalized_;
  if (decoded_ != normalized_) app_view_ = decoded_;
  return nullptr;
}

std::string_view requestPath(std::string_view target) {
  if (target == "*") return target;  // OPTIONS * (asterisk-form)

  // Absolute-form ("http://host:port/path?q", RFC 7230 5.3.2), as sent to a proxy: the route is
  // chosen by the path alone, as for origin-form.
  if (target.empty() || target.front() != '/') {
    const size_t sep = target.find("://");
    if (sep != std::string_view::npos && isScheme(target.substr(0, sep))) {
      std::string_view rest = target.substr(sep + 3);
      const size_t path_start = rest.find_first_of("/?#");
      if (path_start == std::string_view::npos || rest[path_start] != '/') return "/";
      target = rest.substr(path_start);
    }
  }
  // A fragment is never sent by a conforming client, but one that does must not change routing.
  const size_t end = target.find_first_of("?#");
  return end == std::string_view::npos ? target : target.substr(0, end);
}

}  // namespace loopguard::routing
