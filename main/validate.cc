#include <iostream>

#include "config/loader.h"
#include "main/commands.h"

namespace loopguard {

int runValidate(const CommonOptions& options) {
  config::LoadResult result = config::loadConfigFile(options.config_path, config::Purpose::Any);
  if (!result.ok()) {
    for (const config::ConfigError& e : result.errors) std::cerr << e.format() << "\n";
    std::cerr << result.errors.size() << (result.errors.size() == 1 ? " error" : " errors")
              << " in " << options.config_path << "\n";
    return 1;
  }
  // Valid, so exit 0 whatever they say; on stderr, in the errors' format, for editors to pick up.
  for (const config::ConfigError& w : result.warnings) std::cerr << w.format() << "\n";
  std::cout << options.config_path << ": ok";
  if (!result.warnings.empty()) {
    std::cout << " (" << result.warnings.size()
              << (result.warnings.size() == 1 ? " warning" : " warnings") << ")";
  }
  std::cout << "\n";
  return 0;
}

}  // namespace loopguard
