// Time, one timer and one later step, as the pure limiting logic sees them (a uv timer and a
// ready call in the proxy, a fake clock in the unit tests).
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
  // Asks for one call back to the user from a later step (the loop's ready queue), never from
  // inside this call. Asking again before it ran changes nothing: it runs once.
  virtual void post() = 0;
};

}  // namespace loopguard::routing
