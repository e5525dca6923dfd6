// Who may use the admin endpoints that reveal the config or change state (/config, /reload,
// /advice and what is below it). Without a token: loopback peers only (and peers of a unix-socket
// admin listener, which the file system guards). With a token (admin.token_file): whoever sends
// `Authorization: Bearer <token>`, loopback included, and nobody else. Every other endpoint
// (/healthz, /readyz, /metrics, ...) stays open: the kubelet and the scraper call those from
// the pod network. Pure: no sockets, unit-tested.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace loopguard::admin {

struct AdminPeer {
  bool local = false;              // a loopback address, or a unix-socket listener
  std::string_view authorization;  // the Authorization header, if any
};

struct AccessDecision {
  int status = 0;      // 0: allowed; else 401 or 403
  const char* why = "";
  bool allowed() const { return status == 0; }
};

class AdminAccessPolicy {
 public:
  // Each entry guards that path and every path below it ("/advice" guards "/advice/reset").
  static std::vector<std::string> defaultGuardedPaths();
  explicit AdminAccessPolicy(std::vector<std::string> guarded = defaultGuardedPaths());

  // The token every guarded request must present; empty = none (loopback only).
  void setToken(std::string token) { token_ = std::move(token); }
  bool hasToken() const { return !token_.empty(); }
  const std::string& token() const { return token_; }

  bool guards(std::string_view path) const;
  AccessDecision check(std::string_view path, const AdminPeer& peer) const;

 private:
  std::vector<std::string> guarded_;
  std::string token_;
};

// 127.0.0.0/8, ::1 and ::ffff:127.x.y.z (the text of uv_ip4_name / uv_ip6_name).
bool isLoopbackAddress(std::string_view ip);

// Compares a secret with what a client sent in time that does not depend on where they differ.
bool constantTimeEquals(std::string_view secret, std::string_view presented);

// The token of "Bearer <token>" (scheme case-insensitive), or empty.
std::string_view bearerToken(std::string_view authorization);

}  // namespace loopguard::admin
