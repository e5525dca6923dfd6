// Fixed-size blocks carved from 64 KiB chunks mapped apart from the malloc heap: for the objects
// every open connection holds for its whole life (a client or upstream connection and its TCP
// handle). Packed
// with no per-block header (a malloc chunk adds 16 bytes), and apart from what requests
// allocate and free: when a burst of requests is over, what it allocated can go back to the
// system (malloc_trim) because no connection sits between its pages. nginx gets the same from
// its preallocated connection array.
//
// A block finds its slab through the header at the start of its (aligned) chunk, so release()
// needs nothing but the pointer; a chunk whose blocks are all free is unmapped (one is kept so
// a connection opening and closing at a chunk's edge does not map and unmap each time).
// Single-threaded, like the loop that owns it (uv::Loop::slab).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

#include "common/intrusive_list.h"

namespace loopguard {

class Slab {
 public:
  static constexpr size_t kChunkBytes = 64 * 1024;
  // Blocks are 8-aligned, not 16 as new aligns: what lives here (connections, TCP handles)
  // needs no more, and a 248-byte uv_tcp_t then takes 248 bytes, not 256. What is placed in a
  // slab checks it (SlabAllocated, and uv::Loop::slab's callers).
  static constexpr size_t kAlign = 8;

  explicit Slab(size_t block_bytes);
  // Chunks with live blocks are left mapped (an object that outlives its loop keeps valid
  // memory, as it would on the heap); free ones are unmapped.
  ~Slab();
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;

  size_t blockBytes() const { return block_bytes_; }
  // The block size a slab asked for `block_bytes` has (a multiple of kAlign).
  static size_t roundedBlockBytes(size_t block_bytes);
  // nullptr only if the system refuses memory.
  void* allocate();
  // `block` came from allocate() of some Slab, which takes it back.
  static void release(void* block);

  size_t mappedChunks() const { return mapped_; }
  size_t liveBlocks() const { return live_; }

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  struct Chunk : ListNode<Chunk> {
    Slab* slab;
    FreeBlock* free = nullptr;
    uint32_t live = 0;
    uint32_t never_used = 0;  // index of the first block never handed out
  };

  // Where a chunk's first block starts: after its header, aligned.
  static constexpr size_t kFirstBlock =
      (sizeof(Chunk) + alignof(std::max_align_t) - 1) / alignof(std::max_align_t) *
      alignof(std::max_align_t);

  Chunk* mapChunk();
  void takeBack(Chunk& chunk, void* block);

  size_t block_bytes_;
  uint32_t blocks_per_chunk_;
  size_t live_ = 0;
  size_t mapped_ = 0;
  // Every chunk with a live block: those with a free block too (allocate takes from the front),
  // and the full ones, which rejoin open_ when a block comes back. Both are known so that the
  // slab's destruction can tell every chunk it still has live blocks in that it is gone.
  IntrusiveList<Chunk> open_;
  IntrusiveList<Chunk> full_;
  Chunk* spare_ = nullptr;  // an empty chunk kept mapped
};

// A class whose objects live in a Slab: `new (slab) T(...)`; a plain `delete` (OwnedList's,
// the loop's deferred delete) gives the block back to it.
struct SlabAllocated {
  static void* operator new(size_t bytes, Slab& slab) {
    // An over-aligned class would reach the std::align_val_t form, which does not exist here.
    if (bytes > slab.blockBytes()) throw std::bad_alloc();
    void* block = slab.allocate();
    if (block == nullptr) throw std::bad_alloc();
    return block;
  }
  static void operator delete(void* block) { Slab::release(block); }
  static void operator delete(void* block, Slab&) { Slab::release(block); }  // a throwing ctor
};

}  // namespace loopguard
