// The effective config as JSON, for the admin API's GET /config (redacted) and for comparing
// configs at reload (whole). Every key is spelt as in the
// YAML file and every value is one the loader reads back to the same Config (JSON is YAML), so
// the output can be saved and used as a config: durations are strings ("250ms", "5s", "0s"),
// sizes are integers in bytes, addresses strings, unset optionals null.
#pragma once

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace loopguard::config {

// `source_path` is not part of the schema and is left out; upstreams and pools come out as
// objects keyed by name (as in YAML), routes as a list in match order.
nlohmann::json configToJson(const Config& config);

// What GET /config shows: configToJson with the values of every pool's `env` replaced by
// kRedacted (the keys stay), since env is where secrets for the workers go.
inline constexpr const char* kRedacted = "<redacted>";
nlohmann::json configToJsonRedacted(const Config& config);

}  // namespace loopguard::config
