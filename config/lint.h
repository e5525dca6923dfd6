// Configs that are valid but probably not what was meant: a route no request can reach, a pool
// nothing sends to, a route limit its pool can never fill. `loopguard validate` prints these as
// "FILE:LINE:COL: warning: ..." (exit 0); `proxy` and `offload` log them at start and reload.
// Pure: runs on a loaded Config.
#pragma once

#include <vector>

#include "config/config.h"
#include "config/loader.h"

namespace loopguard::config {

std::vector<ConfigError> lintConfig(const Config& config);

}  // namespace loopguard::config
