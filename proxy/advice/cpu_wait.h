// How a process's loop thread spent its time: samples of the cumulative CPU time and run-queue
// wait of its main thread (/proc/PID/task/PID/schedstat, where the process can be seen), in a
// ring. A stall during which the loop thread was runnable but mostly waiting for a CPU, and
// hardly ran, was the machine's doing — other processes, a process pool's workers on the same
// cores, a noisy neighbour — not a handler's: the statistics discount it. A handler computing
// on the loop makes the thread run (if only when the machine lets it); a thread holding the GIL
// keeps it asleep, not waiting for a CPU; neither looks starved.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace loopguard::advice {

class CpuWait {
 public:
  static constexpr size_t kSamples = 512;

  // At `at_ns` the thread had run `total_run_ns` and waited `total_wait_ns` in all.
  void add(int64_t at_ns, int64_t total_run_ns, int64_t total_wait_ns);
  bool empty() const { return count_ == 0; }

  struct Usage {
    int64_t covered_ns = 0;  // the part of the window the samples cover
    int64_t run_ns = 0;
    int64_t wait_ns = 0;
  };
  // Within [from_ns, to_ns], as far as the samples cover it (totals interpolated linearly
  // between samples; the part after the last sample or before the first is left out).
  Usage usage(int64_t from_ns, int64_t to_ns) const;
  // The loop thread spent [from_ns, to_ns] at least half waiting for a CPU and ran under a
  // tenth of it (and under 1 ms).
  bool starved(int64_t from_ns, int64_t to_ns) const;

 private:
  struct Sample {
    int64_t at_ns;
    int64_t run_ns;
    int64_t wait_ns;
  };
  Sample totalsAt(int64_t t) const;
  const Sample& at(size_t i) const { return samples_[(first_ + i) % kSamples]; }

  std::array<Sample, kSamples> samples_{};
  size_t first_ = 0;
  size_t count_ = 0;
};

// CPU time and run-queue wait (ns) from /proc/PID/schedstat's text ("run wait slices").
bool parseSchedstat(std::string_view text, int64_t& run_ns, int64_t& wait_ns);

}  // namespace loopguard::advice
