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

int runProxy(const CommonOptions& options);
int runOffload(const CommonOptions& options);
int runValidate(const CommonOptions& options);

}  // namespace loopguard
