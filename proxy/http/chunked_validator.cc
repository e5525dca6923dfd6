#include "proxy/http/chunked_validator.h"

#include "proxy/http/header_rules.h"

namespace loopguard::http {

namespace {

bool isWs(char c) { return c == ' ' || c == '\t'; }

// qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
bool isQdText(char c) {
  const auto u = static_cast<unsigned char>(c);
  return c == '\t' || c == ' ' || c == 0x21 || (u >= 0x23 && u <= 0x5b) ||
         (u >= 0x5d && u <= 0x7e) || u >= 0x80;
}

// field-vchar / SP / HTAB (obs-text included), as in a header value
bool isFieldValueChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return c == '\t' || (u >= 0x20 && u != 0x7f);
}

}  // namespace

bool ChunkedValidator::fail(const char* why) {
  state_ = State::Error;
  error_ = why;
  return false;
}

// chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
// chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
// chunk-ext-val = token / quoted-string
// last-chunk = 1*("0") [ chunk-ext ] CRLF, then *( field-line CRLF ) CRLF
bool ChunkedValidator::step(char c) {
  switch (state_) {
    case State::Size: {
      if (++line_bytes_ > kMaxSizeLineBytes) return fail("chunk size line too long");
      const int v = hexDigitValue(c);
      if (v >= 0) {
        if (size_ > (UINT64_MAX >> 4)) return fail("chunk size overflows");
        size_ = size_ * 16 + static_cast<uint64_t>(v);
        have_digit_ = true;
        return true;
      }
      if (!have_digit_) return fail("invalid chunk size");
      if (c == '\r') state_ = State::SizeLf;
      else if (c == ';') state_ = State::ExtBeforeName;
      else if (isWs(c)) state_ = State::ExtBws;
      else return fail("invalid chunk size");
      return true;
    }
    case State::SizeLf:
      if (c != '\n') return fail("chunk size line not ended by CRLF");
      state_ = size_ == 0 ? State::TrailerStart : State::Data;
      return true;
    case State::DataCr:
      if (c != '\r') return fail("chunk data not followed by CRLF");
      state_ = State::DataLf;
      return true;
    case State::DataLf:
      if (c != '\n') return fail("chunk data not followed by CRLF");
      state_ = State::Size;
      size_ = 0;
      have_digit_ = false;
      line_bytes_ = 0;
      return true;
    case State::Data:
    case State::Done:
    case State::Error:
      return fail("bytes after the end of the chunked body");
    default:
      break;
  }

  // The rest of the size line (extensions) and the trailer section.
  if (state_ < State::SizeLf && ++line_bytes_ > kMaxSizeLineBytes) {
    return fail("chunk extensions too long");
  }
  if (state_ >= State::TrailerStart && ++trailer_bytes_ > max_trailer_bytes_) {
    return fail("trailer section too large");
  }
  switch (state_) {
    case State::ExtBws:  // BWS is only allowed before ';' (or '=')
      if (c == ';') state_ = State::ExtBeforeName;
      else if (!isWs(c)) return fail("invalid chunk extension");
      return true;
    case State::ExtBeforeName:
      if (isTokenChar(c)) state_ = State::ExtName;
      else if (!isWs(c)) return fail("invalid chunk extension");
      return true;
    case State::ExtName:
      if (c == '\r') state_ = State::SizeLf;
      else if (c == ';') state_ = State::ExtBeforeName;
      else if (c == '=') state_ = State::ExtBeforeValue;
      else if (isWs(c)) state_ = State::ExtAfterName;
      else if (!isTokenChar(c)) return fail("invalid chunk extension");
      return true;
    case State::ExtAfterName:
      if (c == ';') state_ = State::ExtBeforeName;
      else if (c == '=') state_ = State::ExtBeforeValue;
      else if (!isWs(c)) return fail("invalid chunk extension");
      return true;
    case State::ExtBeforeValue:
      if (c == '"') state_ = State::ExtQuoted;
      else if (isTokenChar(c)) state_ = State::ExtToken;
      else if (!isWs(c)) return fail("invalid chunk extension");
      return true;
    case State::ExtToken:
      if (c == '\r') state_ = State::SizeLf;
      else if (c == ';') state_ = State::ExtBeforeName;
      else if (isWs(c)) state_ = State::ExtBws;
      else if (!isTokenChar(c)) return fail("invalid chunk extension");
      return true;
    case State::ExtQuoted:
      if (c == '"') state_ = State::ExtAfterQuoted;
      else if (c == '\\') state_ = State::ExtQuotedPair;
      else if (!isQdText(c)) return fail("invalid chunk extension");
      return true;
    case State::ExtQuotedPair:
      if (!isFieldValueChar(c)) return fail("invalid chunk extension");
      state_ = State::ExtQuoted;
      return true;
    case State::ExtAfterQuoted:
      if (c == '\r') state_ = State::SizeLf;
      else if (c == ';') state_ = State::ExtBeforeName;
      else if (isWs(c)) state_ = State::ExtBws;
      else return fail("invalid chunk extension");
      return true;
    case State::TrailerStart:
      if (c == '\r') state_ = State::FinalLf;
      else if (isTokenChar(c)) state_ = State::TrailerName;
      else return fail("invalid trailer field");  // LF, obs-fold, garbage
      return true;
    case State::TrailerName:
      if (c == ':') state_ = State::TrailerValue;
      else if (!isTokenChar(c)) return fail("invalid trailer field");
      return true;
    case State::TrailerValue:
      if (c == '\r') state_ = State::TrailerLf;
      else if (!isFieldValueChar(c)) return fail("invalid trailer field");
      return true;
    case State::TrailerLf:
      if (c != '\n') return fail("trailer field not ended by CRLF");
      state_ = State::TrailerStart;
      return true;
    case State::FinalLf:
      if (c != '\n') return fail("chunked body not ended by CRLF");
      state_ = State::Done;
      return true;
    default:
      return fail("invalid chunked body");
  }
}

ChunkedValidator::Result ChunkedValidator::decode(const char* p, size_t len, Sink* sink) {
  size_t i = 0;
  while (i < len && state_ != State::Done && state_ != State::Error) {
    if (state_ == State::Data) {
      const size_t take = len - i < size_ ? len - i : static_cast<size_t>(size_);
      if (sink != nullptr) sink->onChunkData(p + i, take);
      i += take;
      size_ -= take;
      if (size_ == 0) state_ = State::DataCr;
      continue;
    }
    if (!step(p[i])) break;
    ++i;
  }
  Result r;
  r.consumed = i;
  r.status = state_ == State::Done    ? Status::Done
             : state_ == State::Error ? Status::Error
                                      : Status::NeedMore;
  return r;
}

bool ChunkedValidator::feed(const char* data, size_t len) {
  if (state_ == State::Error) return false;
  Result r = decode(data, len, nullptr);
  if (r.status == Status::Error) return false;
  if (r.consumed < len) return fail("bytes after the end of the chunked body");
  return true;
}

}  // namespace loopguard::http
