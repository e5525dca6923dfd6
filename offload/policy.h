// The supervision rules of a worker pool as pure functions and values: restart backoff, the
// recycle threshold with jitter, how an exit is classified, and how {socket} / {port} /
// {index} / {pid} are substituted. No loop, no processes: unit-tested directly.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"

namespace loopguard::offload {

// Why a worker was replaced (loopguard_pool_worker_restarts_total{reason}).
enum class RestartReason { Exit, Crash, Timeout, MaxRequests, MaxRss, NotReady };
inline constexpr size_t kRestartReasonCount = 6;
const char* restartReasonName(RestartReason reason);

// How a process ended, as libuv reports it.
struct ExitStatus {
  int64_t code = 0;
  int signal = 0;  // 0: it exited by itself with `code`
};

// A clean exit (code 0) is "exit": the app shut itself down. A signal or a non-zero code is a
// "crash".
RestartReason classifyExit(const ExitStatus& status);
// "exit code 3", "signal 9 (SIGKILL)".
std::string describeExit(const ExitStatus& status);

// Exponential restart delay: initial, doubling on every consecutive restart, capped at max.
// reset() after a worker proved stable, so one crash a day does not wait 10 s.
class RestartBackoff {
 public:
  explicit RestartBackoff(const config::Backoff& limits = {}) : limits_(limits) {}
  // The delay before this restart; the next one doubles.
  uint64_t next();
  void reset() { failures_ = 0; }
  void setLimits(const config::Backoff& limits) { limits_ = limits; }
  uint32_t failures() const { return failures_; }

 private:
  config::Backoff limits_;
  uint32_t failures_ = 0;
};

// A worker that stayed ready this long resets its slot's backoff.
inline constexpr uint64_t kStableAfterMs = 10'000;

// The served-request count after which a worker is recycled: max_requests plus a random extra
// of 0..max_requests/10, so workers that started together do not all recycle at the same
// moment. `random` is any 64-bit random value. 0 = never.
uint64_t recycleThreshold(uint64_t max_requests, uint64_t random);

// Values for the placeholders of a command or an env value.
struct Substitutions {
  std::string socket;  // {socket}
  std::string port;    // {port}
  std::string index;   // {index}
  std::string pid;     // {pid} (on_slow)
};
// Replaces every {socket} {port} {index} {pid}; other braces are left as they are.
std::string substitute(std::string_view text, const Substitutions& values);

// Worker counts by state (loopguard_pool_workers{state}). "busy": ready with at least one
// request on it; "ready": ready and idle.
struct PoolStats {
  uint32_t starting = 0;
  uint32_t ready = 0;
  uint32_t busy = 0;
  uint32_t stopping = 0;
  std::array<uint64_t, kRestartReasonCount> restarts{};  // by RestartReason
};

}  // namespace loopguard::offload
