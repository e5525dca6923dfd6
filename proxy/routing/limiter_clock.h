// Time and one timer, as the pure limiting logic sees them (a uv timer in the proxy, a fake clock
// in the unit tests).
#pragma once

#include <cstdint>

namespace loopguard::routing {

using TimePointMs = uint64_t;  // monotonic milliseconds

// One timer per user, armed for the earliest deadline it cares about.
class LimiterClock {
 public:
  virtual ~LimiterClock() = default;
  virtual TimePointMs now() const = 0;
  virtual void arm(TimePointMs deadline) = 0;  // replaces any earlier arming
  virtual void disarm() = 0;
};

}  // namespace loopguard::routing
