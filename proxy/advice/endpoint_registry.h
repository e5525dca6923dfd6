// The endpoints the advisor tells apart: (route, method, path template), each given a small
// dense id that the per-process statistics index by. At most kMaxTemplatesPerRoute per route;
// requests beyond that count as the route's `{other}` endpoint, so cardinality stays bounded
// whatever paths clients send.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace loopguard::advice {

using EndpointId = uint32_t;

struct EndpointInfo {
  std::string route;
  std::string method;
  std::string path;      // the template
  std::string upstream;  // where the route sent it, last seen
};

class EndpointRegistry {
 public:
  static constexpr size_t kMaxTemplatesPerRoute = 200;

  // The id of the endpoint `target` belongs to, registering it when new.
  EndpointId intern(std::string_view route, std::string_view method, std::string_view target,
                    std::string_view upstream);
  // The id of an endpoint already registered, without registering anything. False if none.
  bool find(std::string_view route, std::string_view method, std::string_view target,
            EndpointId& out);
  const EndpointInfo& info(EndpointId id) const { return endpoints_[id]; }
  size_t size() const { return endpoints_.size(); }
  void clear();

 private:
  void makeKey(std::string_view route, std::string_view method, std::string_view target);
  EndpointId add(std::string_view route, std::string_view method, std::string_view path,
                 std::string_view upstream);

  std::unordered_map<std::string, EndpointId> ids_;  // route '\0' method '\0' template
  std::unordered_map<std::string, size_t> templates_per_route_;
  std::vector<EndpointInfo> endpoints_;
  std::string key_;  // scratch, reused per request
};

}  // namespace loopguard::advice
