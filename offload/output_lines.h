// Splits a child's stdout/stderr bytes into lines for the log, with a bound on a line's length
// (a process writing megabytes without a newline must not grow loopguard's memory), and keeps
// the last few lines so a worker that fails to start can be reported with what it said.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace loopguard::offload {

class OutputLines {
 public:
  static constexpr size_t kMaxLine = 8 * 1024;
  static constexpr size_t kKeepLines = 8;

  using Emit = std::function<void(std::string_view line)>;
  explicit OutputLines(Emit emit) : emit_(std::move(emit)) {}

  // New bytes: every complete line is emitted (CR before LF dropped); a line longer than
  // kMaxLine is emitted in kMaxLine pieces.
  void feed(std::string_view bytes);
  // End of stream: emits an unterminated last line.
  void finish();

  // The last kKeepLines lines emitted, oldest first.
  const std::deque<std::string>& last() const { return last_; }

 private:
  void emitLine(std::string_view line);

  Emit emit_;
  std::string partial_;
  std::deque<std::string> last_;
};

// How many lines of a child's stderr go to the log at info: a burst of kBurst, then kPerSecond
// (a token bucket). A process that floods stderr (an app's own access log, a warning in a loop)
// cannot drown loopguard's log; its excess lines go at debug and are counted.
class LineBudget {
 public:
  static constexpr double kBurst = 50;
  static constexpr double kPerSecond = 10;

  // True if a line written at `now_ms` (a monotonic clock) fits the budget.
  bool take(uint64_t now_ms);
  // Lines refused since the last call, which resets the count.
  uint64_t takeRefused() { return std::exchange(refused_, 0); }

 private:
  double tokens_ = kBurst;
  uint64_t last_ms_ = 0;
  bool started_ = false;
  uint64_t refused_ = 0;
};

}  // namespace loopguard::offload
