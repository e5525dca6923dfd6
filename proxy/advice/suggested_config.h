// The config `GET /advice` suggests: the running config, plus, ahead of each route that has
// endpoints blocking the loop, one route per such endpoint to a pool (the first declared pool;
// a commented placeholder pool if there is none). Rendered as YAML from the running config's
// JSON form (config/to_json.h), so every key of the running config is kept; comments say why
// each route was added. It validates as is when a pool exists, and applied as is moves the
// blocking endpoints off the app's loop.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/advice/advisor.h"

namespace loopguard::advice {

std::string suggestedConfig(const config::Config& running, const std::vector<EndpointReport>& endpoints);

// Block-style YAML for a JSON value of the config's shape (objects, arrays, scalars), with the
// config's sections and route keys in their usual order. Null values are left out (in this
// schema null means "the default"). Exposed for the unit tests.
std::string renderConfigYaml(const nlohmann::json& config);

// The name and match of the route that sends one endpoint to a pool; false for `{other}`
// (too many paths to name).
bool endpointMatch(const EndpointInfo& endpoint, nlohmann::json& match);

}  // namespace loopguard::advice
