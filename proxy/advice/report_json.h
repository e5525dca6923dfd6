// GET /advice as JSON: the SPEC's keys (observed_s, endpoints[route, upstream, method, path,
// samples, verdict, blocking_ms, loop_share, confidence, offloaded], suggested_config), plus
// what each statistic said (evidence), notes where they disagree, and the processes seen.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "proxy/advice/advisor.h"

namespace loopguard::advice {

nlohmann::json reportToJson(const Report& report, const std::string& suggested_config);

// The "advice" section of GET /status (and the status page): the verdicts, one flat row per
// endpoint, without the evidence or the suggested config (GET /advice has those; /status is
// not behind the admin access policy and must not reveal the config).
nlohmann::json reportStatus(const Report& report);

}  // namespace loopguard::advice
