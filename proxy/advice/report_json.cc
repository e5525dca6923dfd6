#include "proxy/advice/report_json.h"

#include <algorithm>
#include <cmath>

namespace loopguard::advice {

using nlohmann::json;

namespace {

double rounded(double v, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::isfinite(v) ? std::round(v * scale) / scale : 0.0;
}

json evidenceToJson(const Evidence& e, const Verdict& v) {
  const double opp = static_cast<double>(e.opportunities);
  const double sn = static_cast<double>(e.silence_n);
  const double rate = opp > 0 ? static_cast<double>(e.blamed) / opp : 0;
  const double if_cause = 1 - std::exp(-e.victim_rate * std::max(0.0, stallMs(e) - 2.0) / 1000);
  json s1{{"opinion", opinionName(v.s1)},
          {"opportunities", e.opportunities},
          {"blamed", e.blamed},
          {"blamed_per_request", opp > 0 ? rounded(static_cast<double>(e.blamed) / opp, 4) : 0.0},
          {"background_per_request", opp > 0 ? rounded(e.expected_blamed / opp, 4) : 0.0},
          {"victims", e.victims},
          {"victim_rate_per_s", rounded(e.victim_rate, 1)},
          {"explained", if_cause > 0 ? rounded(rate / if_cause, 3) : 0.0},
          {"stall_ms", rounded(e.block_ms, 2)}};
  json s2{{"opinion", opinionName(v.s2)},
          {"tested", e.silence_n},
          {"silence_rate", sn > 0 ? rounded(e.silence_observed / sn, 4) : 0.0},
          {"expected_rate", sn > 0 ? rounded(e.silence_expected / sn, 4) : 0.0},
          {"z", e.silence_variance > 0
                    ? rounded((e.silence_observed - e.silence_expected) / std::sqrt(e.silence_variance), 2)
                    : 0.0}};
  json s3{{"opinion", opinionName(v.s3)},
          {"probing", e.probing},
          {"probes", e.probes},
          {"lagged_rate", e.probes ? rounded(static_cast<double>(e.probes_lagged) / static_cast<double>(e.probes), 3) : 0.0},
          {"background_rate", e.all_probes ? rounded(static_cast<double>(e.all_probes_lagged) / static_cast<double>(e.all_probes), 3) : 0.0},
          {"mean_lag_ms", e.probes ? rounded(e.probe_lag_ms / static_cast<double>(e.probes), 2) : 0.0}};
  return json{{"s1_flush", std::move(s1)},
              {"s2_silence", std::move(s2)},
              {"s3_probe", std::move(s3)},
              {"base_ms", rounded(e.base_ms, 2)},
              {"decided_by", v.decided_by}};
}

}  // namespace

json reportToJson(const Report& report, const std::string& suggested_config) {
  json endpoints = json::array();
  for (const EndpointReport& ep : report.endpoints) {
    const Verdict& v = ep.verdict;
    endpoints.push_back(json{{"route", ep.endpoint.route},
                             {"upstream", ep.endpoint.upstream},
                             {"method", ep.endpoint.method},
                             {"path", ep.endpoint.path},
                             {"samples", ep.evidence.samples},
                             {"verdict", verdictName(v.kind)},
                             {"blocking_ms", rounded(v.blocking_ms, 2)},
                             {"loop_share", rounded(v.loop_share, 4)},
                             {"confidence", rounded(v.confidence, 3)},
                             {"offloaded", false},
                             {"processes", ep.processes},
                             {"notes", v.notes},
                             {"evidence", evidenceToJson(ep.evidence, v)}});
  }
  json processes = json::array();
  for (const ProcessReport& p : report.processes) {
    json j{{"upstream", p.upstream},
           {"address", p.address},
           {"completions", p.completions},
           {"loop_busy_ratio", rounded(p.loop_busy_ratio, 4)},
           {"cpu_stalls", p.cpu_stalls}};
    j["pid"] = p.pid != 0 ? json(p.pid) : json(nullptr);
    processes.push_back(std::move(j));
  }
  return json{{"observed_s", rounded(report.observed_s, 1)},
              {"enabled", report.enabled},
              {"probe", report.probe},
              {"observed_requests", report.observed_requests},
              {"unattributed_requests", report.unattributed_requests},
              {"endpoints", std::move(endpoints)},
              {"processes", std::move(processes)},
              {"notes", report.notes},
              {"suggested_config", suggested_config}};
}

json reportStatus(const Report& report) {
  json endpoints = json::array();
  for (const EndpointReport& ep : report.endpoints) {
    const Verdict& v = ep.verdict;
    std::string notes;
    for (const std::string& n : v.notes) notes += (notes.empty() ? "" : "; ") + n;
    endpoints.push_back(json{{"route", ep.endpoint.route},
                             {"method", ep.endpoint.method},
                             {"path", ep.endpoint.path},
                             {"samples", ep.evidence.samples},
                             {"verdict", verdictName(v.kind)},
                             {"blocking_ms", rounded(v.blocking_ms, 2)},
                             {"loop_share", rounded(v.loop_share, 4)},
                             {"confidence", rounded(v.confidence, 3)},
                             {"notes", notes}});
  }
  return json{{"enabled", report.enabled},
              {"probe", report.probe},
              {"observed_s", rounded(report.observed_s, 1)},
              {"observed_requests", report.observed_requests},
              {"endpoints", std::move(endpoints)},
              {"notes", report.notes}};
}

}  // namespace loopguard::advice
