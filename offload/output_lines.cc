#include "offload/output_lines.h"

#include <algorithm>

namespace loopguard::offload {

void OutputLines::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    std::string_view piece = nl == std::string_view::npos ? bytes : bytes.substr(0, nl);
    // Never let the partial line grow past the bound: cut it into kMaxLine pieces.
    while (partial_.size() + piece.size() > kMaxLine) {
      size_t take = kMaxLine - partial_.size();
      partial_.append(piece.substr(0, take));
      emitLine(partial_);
      partial_.clear();
      piece.remove_prefix(take);
    }
    partial_.append(piece);
    if (nl == std::string_view::npos) return;
    if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
    emitLine(partial_);
    partial_.clear();
    bytes.remove_prefix(nl + 1);
  }
}

void OutputLines::finish() {
  if (partial_.empty()) return;
  if (partial_.back() == '\r') partial_.pop_back();
  emitLine(partial_);
  partial_.clear();
}

void OutputLines::emitLine(std::string_view line) {
  last_.emplace_back(line);
  if (last_.size() > kKeepLines) last_.pop_front();
  if (emit_) emit_(line);
}

bool LineBudget::take(uint64_t now_ms) {
  if (!started_) {
    started_ = true;
    last_ms_ = now_ms;
  }
  if (now_ms > last_ms_) {
    tokens_ = std::min(kBurst, tokens_ + static_cast<double>(now_ms - last_ms_) * kPerSecond / 1000);
    last_ms_ = now_ms;
  }
  if (tokens_ >= 1) {
    tokens_ -= 1;
    return true;
  }
  ++refused_;
  return false;
}

}  // namespace loopguard::offload
