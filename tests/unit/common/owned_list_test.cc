#include "common/owned_list.h"

#include <gtest/gtest.h>

#include "tests/unit/support/loop_runner.h"

namespace loopguard {
namespace {

struct Tracked : ListNode<Tracked> {
  explicit Tracked(int& alive) : alive_(alive) { ++alive_; }
  ~Tracked() { --alive_; }
  int& alive_;
};

TEST(OwnedList, RetiredObjectsDieAtTheEndOfTheLoopTurnNotInTheCall) {
  uv::Loop loop;
  int alive = 0;
  OwnedList<Tracked> set;
  Tracked& a = set.emplace(alive);
  set.emplace(alive);
  EXPECT_EQ(set.size(), 2u);
  set.retire(loop.get(), a);
  EXPECT_EQ(set.size(), 1u);
  EXPECT_FALSE(set.contains(a));
  EXPECT_EQ(alive, 2) << "retire() must not destroy its object inside the call";
  set.retire(loop.get(), a);  // twice: no double delete
  testing::step(loop);
  EXPECT_EQ(alive, 1);
  EXPECT_EQ(loop.close(), 0);
}

TEST(OwnedList, TheSetsDestructionDestroysWhatItHolds) {
  int alive = 0;
  {
    OwnedList<Tracked> set;
    set.emplace(alive);
    set.emplace(alive);
    int seen = 0;
    set.forEach([&](Tracked&) { ++seen; });
    EXPECT_EQ(seen, 2);
  }
  EXPECT_EQ(alive, 0);
}

}  // namespace
}  // namespace loopguard
