#include "proxy/admin/access_policy.h"

namespace loopguard::admin {

std::vector<std::string> AdminAccessPolicy::defaultGuardedPaths() {
  // /advice: its suggested_config is the running config, and /advice/reset changes state.
  return {"/config", "/reload", "/advice"};
}

AdminAccessPolicy::AdminAccessPolicy(std::vector<std::string> guarded)
    : guarded_(std::move(guarded)) {}

bool AdminAccessPolicy::guards(std::string_view path) const {
  for (const std::string& g : guarded_) {
    if (path == g || (path.starts_with(g) && path.size() > g.size() && path[g.size()] == '/')) {
      return true;
    }
  }
  return false;
}

AccessDecision AdminAccessPolicy::check(std::string_view path, const AdminPeer& peer) const {
  if (!guards(path)) return {};
  if (token_.empty()) {
    if (peer.local) return {};
    return {403,
            "this endpoint answers loopback clients only; set admin.token_file to allow others "
            "with a bearer token"};
  }
  std::string_view presented = bearerToken(peer.authorization);
  if (presented.empty()) return {401, "a bearer token is required (Authorization: Bearer ...)"};
  if (!constantTimeEquals(token_, presented)) return {403, "the bearer token is wrong"};
  return {};
}

bool isLoopbackAddress(std::string_view ip) {
  if (ip.starts_with("::ffff:")) ip.remove_prefix(7);
  return ip.starts_with("127.") || ip == "::1";
}

bool constantTimeEquals(std::string_view secret, std::string_view presented) {
  if (secret.empty()) return false;
  // The loop runs over what the client sent, comparing it with the secret repeated, so its
  // length and content decide the time, never the secret's.
  unsigned diff = secret.size() != presented.size() ? 1u : 0u;
  for (size_t i = 0; i < presented.size(); ++i) {
    diff |= static_cast<unsigned char>(presented[i]) ^
            static_cast<unsigned char>(secret[i % secret.size()]);
  }
  return diff == 0;
}

std::string_view bearerToken(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = authorization[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return {};
  }
  std::string_view rest = authorization.substr(kScheme.size());
  if (rest.front() != ' ') return {};
  size_t start = rest.find_first_not_of(' ');
  if (start == std::string_view::npos) return {};
  rest.remove_prefix(start);
  while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
  return rest;
}

}  // namespace loopguard::admin
