// llhttp adapter shared by the client side (requests) and the upstream side (responses).
// Every lenient flag stays off. Spans handed out by llhttp point into the caller's read buffer,
// so names, values and the target are copied into the head before execute() returns; body
// spans are passed on as they are (the caller lends its buffer to the write that sends them).
//
// For requests it is stricter than llhttp 8.1, which (every lenient flag off) still accepts a
// bare LF ending the request line, runs of SP between its parts, a bare CR ending a field line
// with an empty value, and unfolds obs-fold whose first line is empty
// (`Transfer-Encoding:\r\n chunked` is read as chunked): before llhttp sees a request head, every
// line of it is checked to end in CRLF with no other CR in it, the request line to have exactly
// one SP between its three parts, and no line to start with whitespace. Chunked request bodies
// are decoded by ChunkedValidator (the full RFC 9112 grammar), not by llhttp. Trailer fields
// never reach headers(): they are checked, counted against max_head_bytes and dropped.
// A request parser stops after each message (onMessageComplete returning 0 counts as a pause),
// so that the next head is checked from its first byte: resume() and reset() before the next.
#pragma once

#include <llhttp.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/http/chunked_validator.h"
#include "proxy/http/header_map.h"
#include "proxy/http/header_rules.h"

namespace loopguard::http {

class ParserEvents {
 public:
  virtual ~ParserEvents() = default;
  // Return 0 to go on, kPauseParser to stop after the head, kSkipBody (responses to HEAD etc.).
  virtual int onHeadComplete() = 0;
  virtual void onBodyData(const char* at, size_t len) = 0;
  // Return 0 to go on with the next message, kPauseParser to stop right after this one.
  virtual int onMessageComplete() = 0;
};

// Events for a parser that has no owner yet (pooled, or not attached): any message is an error.
// Stateless and shared, so a parser never points at nothing.
ParserEvents& detachedParserEvents();

constexpr int kPauseParser = HPE_PAUSED;
constexpr int kSkipBody = 1;

enum class ParseStatus {
  NeedMore,     // every byte consumed, message not complete
  Paused,       // a callback paused; `consumed` bytes were used
  Upgraded,     // a complete upgrade request/response; `consumed` bytes were used
  HeadTooLarge, // head exceeded max_head_bytes
  Error,        // malformed; `reason` says why, `error_status` what to answer a request with
};

struct ParseResult {
  ParseStatus status = ParseStatus::NeedMore;
  size_t consumed = 0;
  const char* reason = nullptr;
  int error_status = 400;  // with Error: 505 for an HTTP/2 connection preface
};

class MessageParser final : private ChunkedValidator::Sink {
 public:
  MessageParser(llhttp_type_t type, ParserEvents& events, uint64_t max_head_bytes);
  MessageParser(const MessageParser&) = delete;
  MessageParser& operator=(const MessageParser&) = delete;

  ParseResult execute(const char* data, size_t len);
  void resume();                // after Paused
  void resumeAfterUpgrade();    // after Upgraded, when the upgrade was declined
  // The peer closed: completes a message delimited by EOF. False if it was cut short.
  bool finish();
  void reset();                 // before the next message on the same connection (after a pause)
  void setMaxHeadBytes(uint64_t n) { max_head_bytes_ = n; }
  void setEvents(ParserEvents& events) { events_ = &events; }

  // Whether a message has started (any byte of it seen).
  bool inMessage() const { return in_message_; }
  bool headComplete() const { return head_complete_; }

  // The head, valid from onHeadComplete until the next message starts.
  std::string_view method() const { return llhttp_method_name(static_cast<llhttp_method_t>(parser_.method)); }
  llhttp_method_t methodId() const { return static_cast<llhttp_method_t>(parser_.method); }
  const std::string& target() const { return target_; }
  int httpMajor() const { return parser_.http_major; }
  int httpMinor() const { return parser_.http_minor; }
  int statusCode() const { return parser_.status_code; }
  const HeaderMap& headers() const { return headers_; }
  HeaderMap& mutableHeaders() { return headers_; }
  bool keepAlive() const { return llhttp_should_keep_alive(&parser_) != 0; }
  bool chunked() const { return (parser_.flags & F_CHUNKED) != 0; }
  bool hasContentLength() const { return (parser_.flags & F_CONTENT_LENGTH) != 0; }
  bool hasTransferEncoding() const { return (parser_.flags & F_TRANSFER_ENCODING) != 0; }
  uint64_t contentLength() const { return declared_length_; }
  // The head announces a body: chunked, or a Content-Length above 0.
  bool hasBody() const { return chunked() || (hasContentLength() && contentLength() > 0); }
  bool upgradeRequested() const { return parser_.upgrade != 0; }
  bool needsEof() const { return llhttp_message_needs_eof(&parser_) != 0; }
  // Requests only: set when a header line began with whitespace (obs-fold). execute() fails
  // such a head, so a complete head never has it set.
  bool sawLineFolding() const { return saw_fold_; }

 private:
  static int onMessageBegin(llhttp_t* p);
  static int onUrl(llhttp_t* p, const char* at, size_t len);
  static int onHeaderField(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValueComplete(llhttp_t* p);
  static int onHeadersComplete(llhttp_t* p);
  static int onBody(llhttp_t* p, const char* at, size_t len);
  static int onMessageCompleteCb(llhttp_t* p);
  bool countHeadBytes(size_t len);
  const char* checkHeadLines(const char* data, size_t len);
  const char* checkRequestLineSpaces(const char* begin, const char* end);
  const char* endLine();
  ParseResult decodeChunkedBody(const char* data, size_t len, size_t offset);
  void onChunkData(const char* at, size_t len) override { events_->onBodyData(at, len); }

  // Where the line check of a request head is: before the request line (empty lines skipped),
  // after a CR there, inside a line, at the start of the next line, after the CR of the blank
  // line that ends the head.
  enum class HeadLines : uint8_t { Start, StartLf, InLine, LineStart, EndLf, Done };
  // Who reads the body of a chunked request: llhttp (off: every other message), or the
  // ChunkedValidator once llhttp has finished the head (it then sees a message without body and
  // stays paused): before the caller resumes after the head, while decoding, after the end.
  enum class OwnBody : uint8_t { Off, AwaitResume, Decoding, Finished };

  llhttp_t parser_{};
  llhttp_settings_t settings_{};
  const llhttp_type_t type_;
  ParserEvents* events_;
  uint64_t max_head_bytes_;
  uint64_t head_bytes_ = 0;
  uint64_t declared_length_ = 0;
  std::string target_;
  HeaderMap headers_;
  bool in_message_ = false;
  bool head_complete_ = false;
  bool in_value_ = false;
  bool head_too_large_ = false;
  bool saw_fold_ = false;
  HeadLines head_lines_ = HeadLines::Start;
  bool in_header_lines_ = false;  // a header line has begun (the request line is behind)
  bool last_was_cr_ = false;      // the last byte of the previous input, inside a line
  uint8_t request_line_spaces_ = 0;  // SPs seen in the request line so far
  bool after_space_ = false;         // the request line's last byte so far was SP (or none yet)
  OwnBody own_body_ = OwnBody::Off;
  ChunkedValidator chunked_;
};

// The facts checkRequestHead judges, from a request head the parser has read (views into it).
RequestFacts requestFactsOf(const MessageParser& parser);

}  // namespace loopguard::http
