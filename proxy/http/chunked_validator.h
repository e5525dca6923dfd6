// Decodes (or only checks) a chunked request body per RFC 9112 7.1, the full grammar: chunk
// extensions with BWS (`3 ;a=b`, `3;a="q"`), trailer field lines, CRLF everywhere. The request
// parser decodes chunked bodies with it instead of llhttp, because llhttp 8.1 (every lenient
// flag off) refuses valid BWS before a chunk extension and accepts chunk data that is not
// followed by CRLF; a proxy that re-frames such a body can disagree with the next hop about
// where the request ends (request smuggling). Data bytes are skipped by length, so the cost is a
// few branches per chunk, not per byte. Nothing is buffered: memory is constant.
#pragma once

#include <cstddef>
#include <cstdint>

namespace loopguard::http {

class ChunkedValidator {
 public:
  // Receives the decoded data of the body, as spans of the input.
  class Sink {
   public:
    virtual ~Sink() = default;
    virtual void onChunkData(const char* at, size_t len) = 0;
  };
  enum class Status { NeedMore, Done, Error };
  struct Result {
    Status status = Status::NeedMore;
    size_t consumed = 0;  // with Done: up to and including the body's last byte
  };

  static constexpr size_t kMaxSizeLineBytes = 4096;  // chunk size + extensions + CRLF
  static constexpr uint64_t kDefaultMaxTrailerBytes = 64 * 1024;

  void reset() { *this = ChunkedValidator(max_trailer_bytes_); }
  ChunkedValidator() = default;
  explicit ChunkedValidator(uint64_t max_trailer_bytes) : max_trailer_bytes_(max_trailer_bytes) {}

  // Decodes the next bytes of the body; `sink` may be null. Stops right after the body's last
  // byte (Done): what follows is the next message and is not consumed.
  Result decode(const char* data, size_t len, Sink* sink);
  // Checks the next bytes of the body; false once the framing is invalid (bytes after the end
  // of the body included).
  bool feed(const char* data, size_t len);
  bool done() const { return state_ == State::Done; }
  const char* error() const { return error_; }

 private:
  enum class State {
    Size, ExtBws, ExtBeforeName, ExtName, ExtAfterName, ExtBeforeValue, ExtToken, ExtQuoted,
    ExtQuotedPair, ExtAfterQuoted, SizeLf, Data, DataCr, DataLf, TrailerStart, TrailerName,
    TrailerValue, TrailerLf, FinalLf, Done, Error
  };
  bool fail(const char* why);
  bool step(char c);  // one byte of anything but chunk data

  State state_ = State::Size;
  uint64_t size_ = 0;
  bool have_digit_ = false;
  size_t line_bytes_ = 0;
  uint64_t trailer_bytes_ = 0;
  uint64_t max_trailer_bytes_ = kDefaultMaxTrailerBytes;
  const char* error_ = nullptr;
};

}  // namespace loopguard::http
