// Fuzz target: the config loader (YAML text -> validated Config, or errors).
//
// For each Purpose the loader gives either a config and no errors, or errors and no config;
// never an exception or a crash. Every error names the file and a position inside the text
// (FILE:LINE:COL, 1-based), says something, and is one line of valid UTF-8 (errors go to
// stderr line by line and, from POST /reload, into JSON). A config that loads comes out of
// configToJson (GET /config) as JSON that loads back (JSON is YAML) to the same config.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "config/loader.h"
#include "config/to_json.h"
#include "tests/fuzz/fuzz_check.h"

namespace loopguard::fuzz {
namespace {

constexpr const char* kFileName = "fuzz.yaml";

// 1-based line count and the length of each line, as an editor shows them.
std::vector<size_t> lineLengths(std::string_view text) {
  std::vector<size_t> lengths;
  size_t start = 0;
  while (true) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      lengths.push_back(text.size() - start);
      return lengths;
    }
    lengths.push_back(nl - start);
    start = nl + 1;
  }
}

std::string dumpOrWhy(const nlohmann::json& j, bool& ok) {
  try {
    ok = true;
    return j.dump();
  } catch (const nlohmann::json::exception& e) {
    ok = false;
    return e.what();
  }
}

void checkErrors(const config::LoadResult& r, std::string_view text) {
  std::vector<size_t> lines = lineLengths(text);
  std::string where = "config \"" + printable(text) + "\"";
  for (const config::ConfigError& e : r.errors) {
    std::string shown = e.format();
    FUZZ_CHECK(e.file == kFileName, "error names another file: " + printable(shown));
    FUZZ_CHECK(!e.message.empty(), "error without a message; " + where);
    FUZZ_CHECK(e.message.rfind("internal error", 0) != 0,
               "an exception escaped the schema: " + printable(shown) + "; " + where);
    FUZZ_CHECK(e.line >= 1 && static_cast<size_t>(e.line) <= lines.size(),
               "error line outside the text: " + printable(shown) + "; " + where);
    // One past the end of the line is where a missing value or the end of input is.
    FUZZ_CHECK(e.column >= 1 && static_cast<size_t>(e.column) <= lines[e.line - 1] + 1,
               "error column outside its line: " + printable(shown) + "; " + where);
    for (char c : shown) {
      auto u = static_cast<unsigned char>(c);
      FUZZ_CHECK(u >= 0x20 && u != 0x7f,
                 "control byte in an error message: " + printable(shown) + "; " + where);
    }
    bool ok = false;
    std::string why = dumpOrWhy(nlohmann::json(shown), ok);
    FUZZ_CHECK(ok, "error message is not valid UTF-8 (" + why + "): " + printable(shown) + "; " + where);
  }
}

void checkRoundTrip(const config::Config& cfg, std::string_view text) {
  std::string where = "config \"" + printable(text) + "\"";
  nlohmann::json j;
  try {
    j = config::configToJson(cfg);
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, std::string("configToJson threw: ") + e.what() + "; " + where);
  }
  bool ok = false;
  std::string dumped = dumpOrWhy(j, ok);
  FUZZ_CHECK(ok, "GET /config would throw: " + dumped + "; " + where);
  config::LoadResult again = config::loadConfigString(dumped, kFileName, config::Purpose::Any);
  FUZZ_CHECK(again.ok(), "configToJson output does not load back: " +
                             (again.errors.empty() ? std::string() : again.errors[0].format()) +
                             "; json " + printable(dumped) + "; " + where);
  FUZZ_CHECK(config::configToJson(*again.config) == j,
             "configToJson output loads back to another config: " + printable(dumped) + "; " + where);
}

}  // namespace
}  // namespace loopguard::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loopguard;
  using namespace loopguard::fuzz;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (config::Purpose purpose :
       {config::Purpose::Proxy, config::Purpose::Offload, config::Purpose::Any}) {
    config::LoadResult r = config::loadConfigString(text, kFileName, purpose);
    FUZZ_CHECK(r.ok() == (r.config != nullptr), "a config with errors, or neither");
    if (r.ok()) {
      if (purpose == config::Purpose::Any) checkRoundTrip(*r.config, text);
    } else {
      checkErrors(r, text);
    }
  }
  return 0;
}
