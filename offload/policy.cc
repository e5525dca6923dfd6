#include "offload/policy.h"

#include <signal.h>
#include <string.h>

#include <algorithm>

namespace loopguard::offload {

const char* restartReasonName(RestartReason reason) {
  switch (reason) {
    case RestartReason::Exit: return "exit";
    case RestartReason::Crash: return "crash";
    case RestartReason::Timeout: return "timeout";
    case RestartReason::MaxRequests: return "max_requests";
    case RestartReason::MaxRss: return "max_rss";
    case RestartReason::NotReady: return "not_ready";
  }
  return "unknown";
}

RestartReason classifyExit(const ExitStatus& status) {
  return status.signal == 0 && status.code == 0 ? RestartReason::Exit : RestartReason::Crash;
}

std::string describeExit(const ExitStatus& status) {
  if (status.signal != 0) {
    const char* name = sigabbrev_np(status.signal);
    std::string text = "signal " + std::to_string(status.signal);
    if (name != nullptr) text += std::string(" (SIG") + name + ")";
    return text;
  }
  return "exit code " + std::to_string(status.code);
}

uint64_t RestartBackoff::next() {
  const uint64_t initial = static_cast<uint64_t>(std::max<int64_t>(0, limits_.initial.count()));
  const uint64_t max = std::max(initial, static_cast<uint64_t>(limits_.max.count()));
  uint64_t delay = initial;
  // Doubling stops at max, so no shift can overflow however long a crash loop lasts.
  for (uint32_t i = 0; i < failures_ && delay < max; ++i) delay = delay == 0 ? 1 : delay * 2;
  if (failures_ < UINT32_MAX) ++failures_;
  return std::min(delay, max);
}

uint64_t recycleThreshold(uint64_t max_requests, uint64_t random) {
  if (max_requests == 0) return 0;
  uint64_t span = max_requests / 10;  // jitter of up to 10%
  if (span == 0) return max_requests;
  uint64_t extra = random % (span + 1);
  return max_requests > UINT64_MAX - extra ? UINT64_MAX : max_requests + extra;
}

std::string substitute(std::string_view text, const Substitutions& values) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '{') {
      std::string_view rest = text.substr(i);
      const std::pair<std::string_view, const std::string*> names[] = {
          {"{socket}", &values.socket},
          {"{port}", &values.port},
          {"{index}", &values.index},
          {"{pid}", &values.pid}};
      bool replaced = false;
      for (const auto& [name, value] : names) {
        if (rest.starts_with(name)) {
          out += *value;
          i += name.size();
          replaced = true;
          break;
        }
      }
      if (replaced) continue;
    }
    out += text[i++];
  }
  return out;
}

}  // namespace loopguard::offload
