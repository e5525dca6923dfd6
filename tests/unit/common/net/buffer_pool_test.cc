#include "common/net/buffer_pool.h"

#include <gtest/gtest.h>

#include <vector>

namespace loopguard::net {
namespace {

using Size = BufferPool::Size;

TEST(BufferPoolTest, BlocksAreWholeAndOfTheirSize) {
  BufferPool pool;
  for (Size size : {Size::Small, Size::Large}) {
    char* block = pool.take(size);
    ASSERT_NE(block, nullptr);
    block[0] = 'a';  // every byte of it is ours (ASan checks this in its build)
    block[BufferPool::bytes(size) - 1] = 'z';
    EXPECT_EQ(pool.blocksInUse(size), 1u);
    pool.give(block, size);
    EXPECT_EQ(pool.blocksInUse(size), 0u);
  }
  EXPECT_EQ(BufferPool::bytes(Size::Small), 32u * 1024);
  EXPECT_EQ(BufferPool::bytes(Size::Large), 256u * 1024);
}

TEST(BufferPoolTest, AGivenBlockIsTheNextTaken) {
  BufferPool pool;
  char* block = pool.take(Size::Large);
  pool.give(block, Size::Large);
  EXPECT_EQ(pool.freeBlocks(Size::Large), 1u);
  EXPECT_EQ(pool.take(Size::Large), block);  // warm, no new mapping
  EXPECT_EQ(pool.freeBlocks(Size::Large), 0u);
  pool.give(block, Size::Large);
}

TEST(BufferPoolTest, FreeListsAreBoundedPerSize) {
  BufferPool pool(2, 3);  // 2 large, 3 small kept
  std::vector<char*> large, small;
  for (int i = 0; i < 5; ++i) large.push_back(pool.take(Size::Large));
  for (int i = 0; i < 5; ++i) small.push_back(pool.take(Size::Small));
  for (char* b : large) pool.give(b, Size::Large);
  for (char* b : small) pool.give(b, Size::Small);
  // The rest went back to the kernel.
  EXPECT_EQ(pool.freeBlocks(Size::Large), 2u);
  EXPECT_EQ(pool.freeBlocks(Size::Small), 3u);
  EXPECT_EQ(pool.blocksInUse(Size::Large), 0u);
  EXPECT_EQ(pool.blocksInUse(Size::Small), 0u);
}

// After a burst the free lists give back what the traffic since the last trim did not need;
// blocks taken and given back in between (steady traffic) stay.
TEST(BufferPoolTest, TrimGivesBackWhatWasNotNeededSinceTheLastTrim) {
  BufferPool pool;
  std::vector<char*> burst;
  for (int k = 0; k < 10; ++k) burst.push_back(pool.take(Size::Small));
  for (char* b : burst) pool.give(b, Size::Small);
  EXPECT_EQ(pool.freeBlocks(Size::Small), 10u);
  pool.trim();  // the lists were empty at their low point: nothing goes
  EXPECT_EQ(pool.freeBlocks(Size::Small), 10u);
  for (int round = 0; round < 3; ++round) {  // steady traffic of 3 blocks at a time
    std::vector<char*> in_use;
    for (int k = 0; k < 3; ++k) in_use.push_back(pool.take(Size::Small));
    for (char* b : in_use) pool.give(b, Size::Small);
  }
  pool.trim();  // 7 were never needed
  EXPECT_EQ(pool.freeBlocks(Size::Small), 3u);
  pool.trim();  // and since then, nothing was
  EXPECT_EQ(pool.freeBlocks(Size::Small), 0u);
  EXPECT_EQ(pool.blocksInUse(Size::Small), 0u);
}

TEST(BufferPoolTest, LargeReadsAreHeldBackForAWhile) {
  BufferPool pool;
  EXPECT_FALSE(pool.largeHeldBack(0));
  pool.holdBackLarge(10'000);
  EXPECT_TRUE(pool.largeHeldBack(10'000));
  EXPECT_TRUE(pool.largeHeldBack(10'000 + BufferPool::kHoldBackMs - 1));
  EXPECT_FALSE(pool.largeHeldBack(10'000 + BufferPool::kHoldBackMs));
  pool.holdBackLarge(10'500);  // renewed by the next refusal
  EXPECT_TRUE(pool.largeHeldBack(10'000 + BufferPool::kHoldBackMs));
}

}  // namespace
}  // namespace loopguard::net
