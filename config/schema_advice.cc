// The `advice:` section: the loop-block advisor's switches.
#include "config/schema_loader.h"

namespace loopguard::config {
namespace {

constexpr std::string_view kAdviceKeys[] = {"enabled", "probe", "probe_path", "min_samples"};

// The probe's request line is built from this: an origin-form path of visible ASCII, no more.
bool isValidProbePath(std::string_view path) {
  if (path.empty() || path.front() != '/' || path.size() > 1024) return false;
  for (char c : path) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

}  // namespace

void SchemaLoader::readAdvice(const Item& item) {
  auto fields = reader_.mapping(item, "advice", kAdviceKeys);
  if (!fields) return;
  AdviceConfig& advice = config_.advice;
  if (const Field* f = fields->get("enabled")) reader_.boolean(f->value, advice.enabled);
  if (const Field* f = fields->get("probe")) reader_.boolean(f->value, advice.probe);
  if (const Field* f = fields->get("probe_path")) {
    std::string path;
    if (reader_.string(f->value, path)) {
      if (isValidProbePath(path)) {
        advice.probe_path = path;
      } else {
        reader_.error(f->value, "probe_path must be a path starting with / without spaces or "
                                "control characters (e.g. /healthz), got " + quoted(path));
      }
    }
  }
  if (const Field* f = fields->get("min_samples")) {
    // Below 10 a verdict is a coin toss; the statistics need victims to have been seen.
    reader_.count(f->value, advice.min_samples, 10, 1'000'000);
  }
}

}  // namespace loopguard::config
