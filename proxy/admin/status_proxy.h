// The proxy's sections of /status: "routes" (limits, queues, refusals, codes, the last
// minute's latency and rates, per-second series for the sparklines) and "upstreams" (per
// endpoint connections and requests, per upstream errors).
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "proxy/proxy_server.h"

namespace loopguard::admin {

nlohmann::json routesStatus(const proxy::ProxyServer& server, uint64_t now_ms);
nlohmann::json upstreamsStatus(const proxy::ProxyServer& server);

}  // namespace loopguard::admin
