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
  std::cout << options.config_path << ": ok\n";
  return 0;
}

}  // namespace loopguard
