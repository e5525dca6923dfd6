// Read buffers shared by every connection on the loop, in two sizes. A connection holds a block
// only while it has unparsed or lent-out bytes, and gives it back when its input is drained, so
// an idle keep-alive connection costs no buffer at all.
//
// Large blocks move big bodies in few syscalls; they are used only while the other side's kernel
// has room for a whole one (see paceReads()). Small blocks are the default, and all that a
// connection holds while its peer is not reading: a stalled reader pins 32 KiB, not 256 KiB.
//
// Blocks are mapped one by one (mmap) and the free lists are short, so memory given back beyond
// them is returned to the kernel at once: the RSS falls after a burst instead of staying at the
// allocator's high-water mark. Under AddressSanitizer they come from new[] instead, so that
// overruns stay detectable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace loopguard::net {

class BufferPool {
 public:
  enum class Size : uint8_t { Small, Large };
  // Large: a 1 MiB response moves in 4 reads and 4 writes instead of 16 of each with 64 KiB
  // blocks (measured: 35 -> 13 syscalls and 611 -> 335 us of CPU per response).
  static constexpr size_t kLargeBlock = 256 * 1024;
  // Small: a request head, a small response, a slow reader's share. 32 KiB rather than 16 KiB
  // (HAProxy's default): a 16 KiB response and its head still arrive in one read, as they did
  // with 256 KiB blocks (16 KiB blocks cost it a second read and write); a connection whose
  // peer stalls holds one small block per direction at most, 64 KiB.
  static constexpr size_t kSmallBlock = 32 * 1024;
  static constexpr size_t bytes(Size size) { return size == Size::Large ? kLargeBlock : kSmallBlock; }

  // Free blocks kept for reuse: by default at most 4 MiB of each size.
  explicit BufferPool(size_t max_free_large = 16, size_t max_free_small = 128)
      : max_free_{max_free_small, max_free_large} {}
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  char* take(Size size);
  void give(char* block, Size size);

  size_t freeBlocks(Size size) const { return free_[index(size)].size(); }

  // Gives back the free blocks that were not needed since the last call: as many as the free
  // list's low point in between, the coldest first. A burst's leftovers go within two calls,
  // while steady traffic, which keeps taking from the lists, keeps its blocks. (A free block
  // that was written to stays resident until it is unmapped.) Called about once a second.
  void trim();
  size_t blocksInUse(Size size) const { return in_use_[index(size)]; }

  // Large reads are for bytes the kernel takes at once. When a socket takes far less than it
  // said it had room for, the machine is short of socket memory (TCP memory pressure refuses
  // every large queue alike): large reads are held back for a while, so that the connections
  // that stall meanwhile pin a small block each instead of a large one.
  static constexpr uint64_t kHoldBackMs = 1'000;
  void holdBackLarge(uint64_t now_ms) { large_held_until_ms_ = now_ms + kHoldBackMs; }
  bool largeHeldBack(uint64_t now_ms) const { return now_ms < large_held_until_ms_; }

 private:
  static size_t index(Size size) { return size == Size::Large ? 1 : 0; }
  static char* allocate(size_t bytes);
  static void release(char* block, size_t bytes);

  std::vector<char*> free_[2];
  size_t max_free_[2];
  size_t in_use_[2] = {0, 0};
  size_t low_free_[2] = {0, 0};  // the free lists' low point since the last trim()
  uint64_t large_held_until_ms_ = 0;
};

}  // namespace loopguard::net
