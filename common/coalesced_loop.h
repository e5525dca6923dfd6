// A loop that callbacks inside it may ask to run again. Pumping a queue calls out to code that
// can release, cancel or admit, and so ask for another pump: a nested call only leaves a note,
// and the outer loop makes one more pass. No recursion, and no pass is lost.
#pragma once

namespace loopguard {

class CoalescedLoop {
 public:
  // Runs `pass` now, and again as long as a call made during it asked for one more pass, then
  // returns true. A call made while a pass is running returns false at once.
  template <typename Pass>
  bool run(Pass&& pass) {
    if (running_) {
      again_ = true;
      return false;
    }
    running_ = true;
    do {
      again_ = false;
      pass();
    } while (again_);
    running_ = false;
    return true;
  }

 private:
  bool running_ = false;
  bool again_ = false;
};

}  // namespace loopguard
