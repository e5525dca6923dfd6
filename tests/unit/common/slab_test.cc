#include "common/slab.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "common/owned_list.h"
#include "common/uv/loop.h"
#include "tests/unit/support/loop_runner.h"

namespace loopguard {
namespace {

TEST(Slab, BlocksAreDistinctAlignedAndWritableAcrossChunks) {
  Slab slab(248);  // a uv_tcp_t: no rounding up to 256
  EXPECT_EQ(slab.blockBytes(), 248u);
  EXPECT_EQ(Slab::roundedBlockBytes(250), 256u);
  std::vector<void*> blocks;
  std::set<uintptr_t> seen;
  for (int i = 0; i < 1000; ++i) {  // about four chunks
    void* b = slab.allocate();
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % Slab::kAlign, 0u);
    std::memset(b, i & 0xff, slab.blockBytes());
    EXPECT_TRUE(seen.insert(reinterpret_cast<uintptr_t>(b)).second) << "handed out twice";
    blocks.push_back(b);
  }
  EXPECT_EQ(slab.liveBlocks(), 1000u);
  EXPECT_GE(slab.mappedChunks(), 4u);
  EXPECT_LE(slab.mappedChunks(), 5u) << "blocks are packed, not one chunk each";
  for (size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_EQ(*static_cast<unsigned char*>(blocks[i]), i & 0xff) << "a neighbour overwrote it";
  }
  for (void* b : blocks) Slab::release(b);
  EXPECT_EQ(slab.liveBlocks(), 0u);
  EXPECT_EQ(slab.mappedChunks(), 1u) << "empty chunks go back to the system, but one spare";
}

TEST(Slab, AFreedBlockIsReusedBeforeAnyNewOne) {
  Slab slab(64);
  void* a = slab.allocate();
  void* b = slab.allocate();
  Slab::release(a);
  EXPECT_EQ(slab.allocate(), a);
  Slab::release(a);
  Slab::release(b);
}

TEST(Slab, AChunkThatFilledUpTakesBlocksAgainOnceOneIsFreed) {
  Slab slab(8 * 1024);  // 7 blocks per chunk (the header takes part of the first)
  std::vector<void*> blocks;
  while (slab.mappedChunks() < 2) blocks.push_back(slab.allocate());
  void* from_first = blocks.front();
  Slab::release(from_first);
  EXPECT_EQ(slab.allocate(), from_first) << "the chunk with the free block is used first";
  for (void* b : blocks) Slab::release(b);
  EXPECT_EQ(slab.liveBlocks(), 0u);
}

// An object that outlives its loop (and so the loop's slab) keeps valid memory, and giving it
// back later touches nothing of the slab that is gone: in a full chunk as in a partly used one.
TEST(Slab, BlocksReleasedAfterTheirSlabIsGoneTouchNothingOfIt) {
  std::vector<void*> blocks;
  {
    Slab slab(8 * 1024);
    while (slab.mappedChunks() < 2) blocks.push_back(slab.allocate());  // the first chunk is full
  }
  for (void* b : blocks) std::memset(b, 0xab, 8 * 1024);  // still mapped
  for (void* b : blocks) Slab::release(b);  // ASan: no use of the destroyed slab
}

struct Pooled : ListNode<Pooled>, SlabAllocated {
  explicit Pooled(int& alive) : alive_(alive) { ++alive_; }
  ~Pooled() { --alive_; }
  int& alive_;
  char payload[200] = {};
};

TEST(Slab, OwnedObjectsInTheLoopsSlabGoBackToItThroughTheDeferredDelete) {
  uv::Loop loop;
  Slab& slab = loop.slab(sizeof(Pooled));
  EXPECT_EQ(&loop.slab(sizeof(Pooled)), &slab) << "one slab per size";
  int alive = 0;
  {
    OwnedList<Pooled> set;
    Pooled& a = set.emplaceIn(slab, alive);
    set.emplaceIn(slab, alive);
    EXPECT_EQ(slab.liveBlocks(), 2u);
    set.retire(loop.get(), a);
    EXPECT_EQ(slab.liveBlocks(), 2u) << "not inside retire()";
    testing::step(loop);
    EXPECT_EQ(alive, 1);
    EXPECT_EQ(slab.liveBlocks(), 1u);
  }
  EXPECT_EQ(alive, 0);
  EXPECT_EQ(slab.liveBlocks(), 0u);
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace loopguard
