// Auto-offload's decisions: which endpoints (route, method, path template) of the routes with
// `auto_offload:` are served by the route's pool instead of the app. Pure logic with the clock
// passed in, unit-tested in tests/unit/proxy/routing/auto_offload_test.cc; the loop side (a
// timer that feeds it the advisor's verdicts, the log line, the metric) is
// proxy/auto_offload_driver.h.
//
// An endpoint moves when the advisor has said `blocks_loop` about it, with at least the route's
// min_confidence and on at least advice.min_samples observations, for kConfirmMs on end (so at
// least two of the advisor's once-a-second refreshes agree). Once moved it stays moved: it no
// longer runs on the app's loop, so the app's statistics can no longer judge it. Decisions are
// kept by route name across reloads (a route that loses `auto_offload` loses its moves) and
// forgotten by reset() (POST /advice/reset). An endpoint the advisor folded into `{other}`
// (a route with too many templates) is never moved: that bucket is many endpoints.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace loopguard::routing {

// What the advisor says about one endpoint it finds blocking.
struct BlockingVerdict {
  std::string route;
  std::string method;
  std::string path;  // the template
  uint64_t samples = 0;
  double confidence = 0;
  double blocking_ms = 0;
  double loop_share = 0;
};

struct MovedEndpoint {
  std::string route;
  std::string method;
  std::string path;
  std::string pool;      // where it went (the route's auto_offload.pool when it moved)
  int64_t since_ms = 0;  // wall clock (ms since the epoch) when it moved
  BlockingVerdict verdict;  // the figures it moved on
};

class AutoOffload {
 public:
  static constexpr int64_t kConfirmMs = 2000;

  struct Rule {
    std::string route;
    std::string upstream;  // the route's target, whose endpoints the advisor judges
    std::string pool;
    double min_confidence = 0.95;
  };

  // The routes with auto_offload (a reload calls it again). Moves of routes no longer listed
  // are dropped; moves of routes still listed stay, whatever else changed.
  void configure(std::vector<Rule> rules, uint64_t min_samples);
  const std::vector<Rule>& rules() const { return rules_; }

  // One look at the advisor's blocking endpoints of `rule`'s upstream (all routes mixed).
  // Returns the endpoints this look moved (the caller logs and counts them).
  std::vector<MovedEndpoint> review(const Rule& rule, const std::vector<BlockingVerdict>& blocking,
                                    int64_t now_ms, int64_t wall_ms);

  // At request-head time: is this request's endpoint moved? O(1) and allocation-free once
  // warm; free for a route with nothing moved.
  bool moved(std::string_view route, std::string_view method, std::string_view target);

  // Forgets every move and every candidate (POST /advice/reset). Returns how many were moved.
  size_t reset();

  std::vector<const MovedEndpoint*> movedEndpoints() const;
  const MovedEndpoint* find(std::string_view route, std::string_view method,
                            std::string_view path) const;
  size_t movedCount(std::string_view route) const;

 private:
  struct Candidate {
    int64_t first_ms = 0;  // qualifying without a break since
    int64_t seen_ms = 0;   // last review that found it qualifying
  };
  static void appendKey(std::string& out, std::string_view route, std::string_view method,
                        std::string_view path);
  bool qualifies(const Rule& rule, const BlockingVerdict& v) const;
  void recount();

  std::vector<Rule> rules_;
  std::vector<size_t> moved_count_;  // by rule
  uint64_t min_samples_ = 30;
  std::unordered_map<std::string, MovedEndpoint> moved_;    // by route '\0' method '\0' path
  std::unordered_map<std::string, Candidate> candidates_;  // same keys
  std::string key_;  // scratch for moved()
};

}  // namespace loopguard::routing
