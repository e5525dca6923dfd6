#include "common/slab.h"

#include <sys/mman.h>

#include <cassert>
#include <cstring>
#include <new>
#include <utility>

namespace loopguard {

namespace {
constexpr size_t roundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }
}  // namespace

Slab::Slab(size_t block_bytes)
    : block_bytes_(roundedBlockBytes(block_bytes)),
      blocks_per_chunk_(static_cast<uint32_t>((kChunkBytes - kFirstBlock) / block_bytes_)) {
  assert(blocks_per_chunk_ > 0);
}

size_t Slab::roundedBlockBytes(size_t block_bytes) {
  return roundUp(block_bytes < sizeof(FreeBlock) ? sizeof(FreeBlock) : block_bytes, Slab::kAlign);
}

Slab::~Slab() {
  if (spare_ != nullptr) munmap(spare_, kChunkBytes);
  // Chunks with live blocks stay mapped (see the header); their blocks' release() finds no slab.
  while (Chunk* c = open_.popFront()) c->slab = nullptr;
  while (Chunk* c = full_.popFront()) c->slab = nullptr;
}

Slab::Chunk* Slab::mapChunk() {
  // Twice the size, then trimmed to an aligned chunk: release() finds the header by masking.
  void* raw = mmap(nullptr, 2 * kChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = roundUp(start, kChunkBytes);
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + 2 * kChunkBytes;
  if (end > aligned + kChunkBytes) {
    munmap(reinterpret_cast<void*>(aligned + kChunkBytes), end - aligned - kChunkBytes);
  }
  ++mapped_;
  return new (reinterpret_cast<void*>(aligned)) Chunk{};
}

void* Slab::allocate() {
  Chunk* c = open_.front();
  if (c == nullptr) {
    c = spare_ != nullptr ? std::exchange(spare_, nullptr) : mapChunk();
    if (c == nullptr) return nullptr;
    c->slab = this;
    open_.pushFront(*c);
  }
  void* block;
  if (c->free != nullptr) {
    block = c->free;
    c->free = c->free->next;
  } else {
    // Blocks are handed out in order first, so a chunk's untouched tail is never paged in.
    block = reinterpret_cast<char*>(c) + kFirstBlock + size_t{c->never_used} * block_bytes_;
    ++c->never_used;
  }
  ++c->live;
  ++live_;
  if (c->free == nullptr && c->never_used == blocks_per_chunk_) {
    c->unlink();
    full_.pushBack(*c);
  }
  return block;
}

void Slab::release(void* block) {
  if (block == nullptr) return;
  auto* c = reinterpret_cast<Chunk*>(reinterpret_cast<uintptr_t>(block) & ~(kChunkBytes - 1));
  if (c->slab == nullptr) return;  // its slab is gone: the chunk stays as it is (see ~Slab)
  c->slab->takeBack(*c, block);
}

void Slab::takeBack(Chunk& c, void* block) {
  auto* f = static_cast<FreeBlock*>(block);
  f->next = c.free;
  c.free = f;
  --c.live;
  --live_;
  if (c.live == 0) {
    c.unlink();
    if (spare_ == nullptr) {
      c.~Chunk();
      spare_ = new (&c) Chunk{};
    } else {
      c.~Chunk();
      munmap(&c, kChunkBytes);
      --mapped_;
    }
    return;
  }
  if (full_.contains(c)) {
    c.unlink();
    open_.pushFront(c);
  }
}

}  // namespace loopguard
