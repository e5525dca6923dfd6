#include "proxy/advice/admin_routes.h"

#include "proxy/advice/report_json.h"
#include "proxy/advice/suggested_config.h"

namespace loopguard::advice {

namespace {

Report reportOf(Advisor* advisor) {
  if (advisor != nullptr) return advisor->report();
  Report report;
  report.enabled = false;
  report.notes.push_back("advice.enabled is false: nothing is observed");
  return report;
}

}  // namespace

bool isAdvicePath(const std::string& path) { return path == "/advice" || path == "/advice/reset"; }

admin::AdminResponse handleAdviceRequest(const admin::AdminRequest& r, Advisor* advisor,
                                         const config::Config& running) {
  auto json_response = [](int status, const nlohmann::json& j) {
    return admin::AdminResponse{status, "application/json", j.dump(2) + "\n"};
  };
  if (r.path == "/advice/reset") {
    if (r.method != "POST") return {405, "text/plain", "method not allowed: use POST\n"};
    if (advisor != nullptr) advisor->reset();
    return json_response(200, nlohmann::json{{"ok", true}, {"enabled", advisor != nullptr}});
  }
  if (r.method != "GET") return {405, "text/plain", "method not allowed\n"};
  Report report = reportOf(advisor);
  return json_response(200, reportToJson(report, suggestedConfig(running, report.endpoints)));
}

nlohmann::json adviceStatus(Advisor* advisor) { return reportStatus(reportOf(advisor)); }

}  // namespace loopguard::advice
