#pragma once

#include <uv.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace loopguard::proxy {

// Bytes queued for one writev: pieces of a read buffer, or of a small frame buffer that the
// Exchange owns (chunk-size lines, heads). Offsets into the frame buffer are resolved only when
// the write is issued, because the buffer may grow while pieces are added.
class OutputBatch {
 public:
  void addData(const char* at, size_t len);
  void addFrame(std::string_view text);   // copied into the frame buffer
  void addOwned(const std::string& text);  // a string that outlives the write
  bool empty() const { return pieces_.empty(); }
  size_t bytes() const { return bytes_; }
  // Builds the uv_buf_t array; valid until clear().
  const std::vector<uv_buf_t>& buffers();
  void clear();

 private:
  struct Piece {
    const char* data;  // null: frame piece
    size_t offset_or_len;
    size_t len;
  };
  std::vector<Piece> pieces_;
  std::string frames_;
  std::vector<uv_buf_t> bufs_;
  size_t bytes_ = 0;
};

}  // namespace loopguard::proxy
