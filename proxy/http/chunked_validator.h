// Checks the raw bytes of a chunked request body against RFC 9112 7.1, alongside llhttp.
// llhttp 8.1 (even with every lenient flag off) accepts chunk data that is not followed by
// CRLF; a proxy that forwards such a body re-frames it and so can disagree with the next hop
// about where the request ends (request smuggling). Data bytes are skipped by length, so the
// cost is a few branches per chunk, not per byte.
#pragma once

#include <cstddef>
#include <cstdint>

namespace loopguard::http {

class ChunkedValidator {
 public:
  void reset() { *this = ChunkedValidator(); }
  // Feeds the next bytes of the body as received; false once the framing is invalid.
  bool feed(const char* data, size_t len);
  bool done() const { return state_ == State::Done; }

 private:
  enum class State { Size, Ext, SizeLf, Data, DataCr, DataLf, TrailerStart, TrailerLine,
                     TrailerLf, FinalLf, Done, Error };
  State state_ = State::Size;
  uint64_t size_ = 0;
  int digits_ = 0;
};

}  // namespace loopguard::http
