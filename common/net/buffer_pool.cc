#include "common/net/buffer_pool.h"

namespace loopguard::net {

BufferPool::~BufferPool() {
  for (char* block : free_) delete[] block;
}

char* BufferPool::take() {
  ++in_use_;
  if (free_.empty()) return new char[kBlockSize];
  char* block = free_.back();
  free_.pop_back();
  return block;
}

void BufferPool::give(char* block) {
  --in_use_;
  if (free_.size() < max_free_) {
    free_.push_back(block);
  } else {
    delete[] block;
  }
}

}  // namespace loopguard::net
