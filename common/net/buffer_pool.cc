#include "common/net/buffer_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <new>

namespace loopguard::net {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kMapBlocks = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kMapBlocks = false;
#else
constexpr bool kMapBlocks = true;
#endif
#else
constexpr bool kMapBlocks = true;
#endif

BufferPool::~BufferPool() {
  for (Size size : {Size::Small, Size::Large}) {
    for (char* block : free_[index(size)]) release(block, bytes(size));
  }
}

char* BufferPool::allocate(size_t n) {
  if (!kMapBlocks) return new char[n];
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();  // as new[] would
  return static_cast<char*>(p);
}

void BufferPool::release(char* block, size_t n) {
  if (!kMapBlocks) {
    delete[] block;
    return;
  }
  munmap(block, n);
}

char* BufferPool::take(Size size) {
  size_t i = index(size);
  ++in_use_[i];
  if (free_[i].empty()) return allocate(bytes(size));
  char* block = free_[i].back();
  free_[i].pop_back();
  if (free_[i].size() < low_free_[i]) low_free_[i] = free_[i].size();
  return block;
}

void BufferPool::trim() {
  for (Size size : {Size::Small, Size::Large}) {
    std::vector<char*>& list = free_[index(size)];
    size_t unused = std::min(low_free_[index(size)], list.size());
    // The list is LIFO: its front has waited longest.
    for (size_t k = 0; k < unused; ++k) release(list[k], bytes(size));
    list.erase(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(unused));
    low_free_[index(size)] = list.size();
  }
}

void BufferPool::give(char* block, Size size) {
  size_t i = index(size);
  --in_use_[i];
  if (free_[i].size() < max_free_[i]) {
    free_[i].push_back(block);
  } else {
    release(block, bytes(size));
  }
}

}  // namespace loopguard::net
