// The subcommands of the `loopguard` binary. Each returns the process exit code.
#pragma once

#include <optional>
#include <string>

namespace loopguard {

struct CommonOptions {
  std::string config_path;
  std::optional<std::string> log_level;   // overrides log.level
  std::optional<std::string> log_format;  // overrides log.format
};

// `loopguard advise`: the advisor's report of a running proxy.
struct AdviseOptions {
  std::string admin;       // HOST:PORT of its admin listener
  double timeout_s = 10;
  bool json = false;       // print the raw JSON
  bool yaml_only = false;  // print the suggested config only
  std::string token_file;  // the proxy's admin.token_file, when it has one
};

int runProxy(const CommonOptions& options);
int runAdvise(const AdviseOptions& options);
int runOffload(const CommonOptions& options);
int runValidate(const CommonOptions& options);

}  // namespace loopguard
