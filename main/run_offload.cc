// `loopguard offload`: a standalone pool (sidecar). The same app, server and pool code as
// `loopguard proxy`, serving `offload.listen` with one implicit route to `offload.pool`
// (offload/sidecar.h), so a proxy elsewhere reaches the pool as an ordinary upstream.
#include "main/serve.h"
#include "offload/sidecar.h"

namespace loopguard {

int runOffload(const CommonOptions& options) {
  config::LoadResult file = loadOrReport(options.config_path, config::Purpose::Offload);
  if (!file.ok()) return 1;
  if (!setupLoggingFor(options, *file.config)) return 2;
  logConfigWarnings(file.warnings);
  return serveApp(options, offload::sidecarConfig(*file.config), file.source, [](AppHooks& hooks) {
    hooks.purpose = config::Purpose::Offload;
    hooks.served_config = [](const config::Config& file) { return offload::sidecarConfig(file); };
  });
}

}  // namespace loopguard
