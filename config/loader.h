// YAML text -> validated Config. The only part of loopguard that includes yaml-cpp.
// Exceptions from yaml-cpp are caught here and turned into ConfigErrors; callers see values.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace loopguard::config {

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based
  int column = 0;  // 1-based
  std::string message;

  // "FILE:LINE:COL: message"
  std::string format() const;
};

// What the config will be used for decides which top-level keys are required.
enum class Purpose {
  Proxy,    // `loopguard proxy`: listen and routes required
  Offload,  // `loopguard offload`: offload required; listen and routes optional
  Any,      // `loopguard validate`: valid for proxy or (when `offload` is present) for offload
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // set only when errors is empty
  std::vector<ConfigError> errors;       // every error found, in file order
  // Valid but probably not meant (config/lint.h), "warning: ..." messages; only when ok().
  std::vector<ConfigError> warnings;
  std::string source;  // the bytes that were parsed (what a file watcher compares against)
  bool ok() const { return errors.empty(); }
};

LoadResult loadConfigFile(const std::string& path, Purpose purpose);
// Reads a whole file; on error returns false with `why` (strerror text).
bool readWholeFile(const std::string& path, std::string& out, std::string& why);
LoadResult loadConfigString(std::string_view yaml, const std::string& file_name, Purpose purpose);

// Parses "250ms", "5s", "2m", "1h", "1.5s" (also "0"). Returns false on anything else; the exact
// grammar and a variant that says why are in config/values.h.
bool parseDuration(std::string_view text, Duration& out);
// Parses "512", "64KiB", "10MiB", "1GiB" (also "KB"/"MB"/"GB" as powers of 1000). False on error.
bool parseSize(std::string_view text, uint64_t& out);
// Parses "host:port", "[v6]:port", "unix:/path". On failure sets `why`.
bool parseAddress(std::string_view text, Address& out, std::string& why);

}  // namespace loopguard::config
