// The advisor's admin endpoints, kept apart from the rest of the admin API so an access policy
// for state-changing endpoints can wrap them: GET /advice (the report, as JSON) and
// POST /advice/reset (forget what was learned).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "proxy/admin/admin_server.h"
#include "proxy/advice/advisor.h"

namespace loopguard::advice {

// True for the paths this handles.
bool isAdvicePath(const std::string& path);

// `advisor` is null when advice is disabled (GET /advice then says so, with the running config
// as the suggestion).
admin::AdminResponse handleAdviceRequest(const admin::AdminRequest& request, Advisor* advisor,
                                         const config::Config& running);

// The "advice" section of GET /status (proxy/admin/status.h).
nlohmann::json adviceStatus(Advisor* advisor);

}  // namespace loopguard::advice
