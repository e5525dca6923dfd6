// The config schema, read from a yaml-cpp document into a Config: which keys exist where, their
// defaults (from config.h), which values are impossible, and the cross-references between
// sections. Internal to config/; split over loader.cc (top level, offload, purpose rules),
// schema_backends.cc (upstreams, pools), schema_routes.cc (routes) and schema_advice.cc.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config/loader.h"
#include "config/yaml_reader.h"

namespace loopguard::config {

// One use: construct, load() the text, finish() to take the result. Keeps going after an error
// so that finish() reports every problem in the file at once.
class SchemaLoader {
 public:
  SchemaLoader(std::string file, Purpose purpose) : reader_(std::move(file)), purpose_(purpose) {
    config_.source_path = reader_.file();
  }

  void load(std::string_view yaml);
  LoadResult finish();

 private:
  void readRoot(const YAML::Node& root);
  void readAdmin(const Item& item);
  void readLog(const Item& item);
  void readLimits(const Item& item);
  void readTimeouts(const Item& item);
  void readUpstreams(const Item& item);
  void readUpstream(const Field& entry);
  void readPools(const Item& item);
  void readPool(const Field& entry);
  void readCommand(const Item& item, std::vector<std::string>& out);
  void readEnv(const Item& item, std::map<std::string, std::string>& out);
  void checkWorkerAddress(const Item& command, Pool& pool);
  void readRoutes(const Item& item);
  void readRoute(const Item& item, size_t index);
  void readMatch(const Item& item, RouteMatch& out);
  void readRouteLimits(const Item& item, RouteLimits& out);
  void readAdaptiveBounds(const Fields& fields, RouteLimits& out);
  void readOffload(const Item& item);
  void readAdvice(const Item& item);  // schema_advice.cc
  void checkListenersDiffer();
  void checkPurpose();

  YamlReader reader_;
  Purpose purpose_;
  Config config_;

  // Names declared, even with broken bodies, so one bad upstream does not also turn every route
  // that names it into a "dangling reference" error.
  std::set<std::string> upstream_names_;
  std::set<std::string> pool_names_;
  std::map<std::string, int> route_name_lines_;
  std::optional<SourcePos> routes_pos_;  // set when `routes` is present
  size_t route_items_ = 0;               // entries in the routes list, valid or not
  bool routes_not_a_list_ = false;       // reported already; no "empty" error on top
  bool listen_given_ = false;            // present and non-null, valid or not
  bool offload_given_ = false;
  SourcePos admin_listen_pos_;
  SourcePos offload_listen_pos_;
};

// "defined: a, b" or "none defined", for dangling-reference messages.
std::string namesOf(const std::set<std::string>& names);

}  // namespace loopguard::config
