#include "proxy/http/chunked_validator.h"

namespace loopguard::http {

namespace {
int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool ChunkedValidator::feed(const char* p, size_t len) {
  size_t i = 0;
  while (i < len) {
    char c = p[i];
    switch (state_) {
      case State::Size: {
        int v = hexValue(c);
        if (v >= 0) {
          if (++digits_ > 16) return (state_ = State::Error), false;
          size_ = size_ * 16 + static_cast<uint64_t>(v);
        } else if (digits_ > 0 && c == ';') {
          state_ = State::Ext;
        } else if (digits_ > 0 && c == '\r') {
          state_ = State::SizeLf;
        } else {
          return (state_ = State::Error), false;
        }
        ++i;
        break;
      }
      case State::Ext:
        if (c == '\r') {
          state_ = State::SizeLf;
        } else if (c == '\n' || (static_cast<unsigned char>(c) < 0x20 && c != '\t')) {
          return (state_ = State::Error), false;
        }
        ++i;
        break;
      case State::SizeLf:
        if (c != '\n') return (state_ = State::Error), false;
        state_ = size_ == 0 ? State::TrailerStart : State::Data;
        ++i;
        break;
      case State::Data: {
        uint64_t take = len - i < size_ ? len - i : size_;
        i += take;
        size_ -= take;
        if (size_ == 0) state_ = State::DataCr;
        break;
      }
      case State::DataCr:
        if (c != '\r') return (state_ = State::Error), false;
        state_ = State::DataLf;
        ++i;
        break;
      case State::DataLf:
        if (c != '\n') return (state_ = State::Error), false;
        state_ = State::Size;
        size_ = 0;
        digits_ = 0;
        ++i;
        break;
      case State::TrailerStart:
        state_ = c == '\r' ? State::FinalLf : State::TrailerLine;
        if (c == '\n') return (state_ = State::Error), false;
        ++i;
        break;
      case State::TrailerLine:
        if (c == '\r') {
          state_ = State::TrailerLf;
        } else if (c == '\n') {
          return (state_ = State::Error), false;
        }
        ++i;
        break;
      case State::TrailerLf:
        if (c != '\n') return (state_ = State::Error), false;
        state_ = State::TrailerStart;
        ++i;
        break;
      case State::FinalLf:
        if (c != '\n') return (state_ = State::Error), false;
        state_ = State::Done;
        ++i;
        break;
      case State::Done:
      case State::Error:
        return (state_ = State::Error), false;
    }
  }
  return true;
}

}  // namespace loopguard::http
