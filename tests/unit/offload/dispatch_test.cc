#include "offload/dispatch.h"

#include <gtest/gtest.h>

#include <vector>

namespace loopguard::offload {
namespace {

size_t pick(const std::vector<DispatchView>& workers, uint32_t concurrency) {
  auto it = pickLeastBusy(workers.begin(), workers.end(), concurrency,
                          [](const DispatchView& v) { return v; });
  return it == workers.end() ? SIZE_MAX : static_cast<size_t>(it - workers.begin());
}

TEST(PickLeastBusy, TakesTheWorkerWithFewestRequestsInFlight) {
  EXPECT_EQ(pick({{true, 2, 0}, {true, 0, 50}, {true, 1, 0}}, 4), 1u);
}

TEST(PickLeastBusy, TiesGoToTheWorkerThatServedLess) {
  EXPECT_EQ(pick({{true, 1, 30}, {true, 1, 10}, {true, 1, 20}}, 4), 1u);
  EXPECT_EQ(pick({{true, 0, 5}, {true, 0, 5}}, 1), 0u);  // then the first
}

TEST(PickLeastBusy, NeverAStartingOrStoppingWorker) {
  EXPECT_EQ(pick({{false, 0, 0}, {true, 3, 0}, {false, 0, 0}}, 4), 1u);
  EXPECT_EQ(pick({{false, 0, 0}, {false, 0, 0}}, 4), SIZE_MAX);
}

TEST(PickLeastBusy, NeverBeyondConcurrencyPerWorker) {
  EXPECT_EQ(pick({{true, 1, 0}, {true, 1, 0}}, 1), SIZE_MAX);
  EXPECT_EQ(pick({{true, 2, 0}, {true, 1, 0}}, 2), 1u);
  EXPECT_EQ(pick({}, 1), SIZE_MAX);
}

TEST(PickLeastBusy, FillingAPoolNeverExceedsASlot) {
  // Dispatch one request at a time into 3 workers x 2 slots, like the pool does.
  std::vector<DispatchView> w(3, DispatchView{true, 0, 0});
  for (int i = 0; i < 6; ++i) {
    size_t k = pick(w, 2);
    ASSERT_NE(k, SIZE_MAX) << i;
    ++w[k].in_flight;
    ++w[k].served;
  }
  for (const auto& v : w) EXPECT_EQ(v.in_flight, 2u);
  EXPECT_EQ(pick(w, 2), SIZE_MAX);
}

TEST(SlotLedger, AdmitsWhileHeldIsBelowSlots) {
  SlotLedger l;
  EXPECT_FALSE(l.tryTake());  // no ready worker: no slot
  l.setSlots(2);
  EXPECT_TRUE(l.tryTake());
  EXPECT_TRUE(l.tryTake());
  EXPECT_FALSE(l.tryTake());
  EXPECT_EQ(l.room(), 0u);
  EXPECT_TRUE(l.giveBack());
  EXPECT_EQ(l.room(), 1u);
  EXPECT_TRUE(l.tryTake());
}

TEST(SlotLedger, SlotsShrinkingBelowHeldBlockAdmissionUntilEnoughEnd) {
  SlotLedger l;
  l.setSlots(4);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(l.tryTake());
  l.setSlots(2);  // a worker died with two requests on it
  EXPECT_FALSE(l.hasRoom());
  EXPECT_EQ(l.room(), 0u);
  l.giveBack();
  l.giveBack();
  EXPECT_FALSE(l.tryTake());  // 2 held, 2 slots
  l.giveBack();
  EXPECT_TRUE(l.tryTake());
}

TEST(SlotLedger, GiveBackWithoutTakeIsRefusedNotAnUnderflow) {
  SlotLedger l;
  l.setSlots(1);
  EXPECT_FALSE(l.giveBack());
  EXPECT_EQ(l.held(), 0u);
  EXPECT_TRUE(l.tryTake());
}

}  // namespace
}  // namespace loopguard::offload
