#include "proxy/output_batch.h"

namespace loopguard::proxy {

void OutputBatch::addData(const char* at, size_t len) {
  if (len == 0) return;
  pieces_.push_back({at, len, len});
  bytes_ += len;
}

void OutputBatch::addFrame(std::string_view text) {
  pieces_.push_back({nullptr, frames_.size(), text.size()});
  frames_.append(text);
  bytes_ += text.size();
}

void OutputBatch::addOwned(const std::string& text) { addData(text.data(), text.size()); }

const std::vector<uv_buf_t>& OutputBatch::buffers() {
  bufs_.clear();
  for (const Piece& p : pieces_) {
    const char* base = p.data != nullptr ? p.data : frames_.data() + p.offset_or_len;
    bufs_.push_back(uv_buf_init(const_cast<char*>(base), static_cast<unsigned>(p.len)));
  }
  return bufs_;
}

void OutputBatch::clear() {
  pieces_.clear();
  frames_.clear();
  bufs_.clear();
  bytes_ = 0;
}

}  // namespace loopguard::proxy
