#include "proxy/http/message_parser.h"

#include <cstring>

namespace loopguard::http {

namespace {
MessageParser* self(llhttp_t* p) { return static_cast<MessageParser*>(p->data); }
}  // namespace

MessageParser::MessageParser(llhttp_type_t type, ParserEvents& events, uint64_t max_head_bytes)
    : type_(type), events_(&events), max_head_bytes_(max_head_bytes) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = &MessageParser::onMessageBegin;
  settings_.on_url = &MessageParser::onUrl;
  settings_.on_header_field = &MessageParser::onHeaderField;
  settings_.on_header_value = &MessageParser::onHeaderValue;
  settings_.on_header_value_complete = &MessageParser::onHeaderValueComplete;
  settings_.on_headers_complete = &MessageParser::onHeadersComplete;
  settings_.on_body = &MessageParser::onBody;
  settings_.on_message_complete = &MessageParser::onMessageCompleteCb;
  llhttp_init(&parser_, type, &settings_);
  parser_.data = this;
}

void MessageParser::reset() {
  llhttp_reset(&parser_);
  in_message_ = false;
  head_complete_ = false;
  // A pooled parser serves many connections: nothing of the last message may leak into the
  // next one (a "too large" from before would turn the next error into a 431).
  head_too_large_ = false;
  saw_fold_ = false;
  head_lines_ = HeadLines::Start;
  in_header_lines_ = false;
  last_was_cr_ = false;
  request_line_spaces_ = 0;
  after_space_ = false;
  own_body_ = OwnBody::Off;
}

bool MessageParser::countHeadBytes(size_t len) {
  head_bytes_ += len;
  if (head_bytes_ > max_head_bytes_) {
    head_too_large_ = true;
    return false;
  }
  return true;
}

// Every line of a request head ends in CRLF, no CR stands anywhere else in it, the request line
// is METHOD SP TARGET SP VERSION with exactly one SP each, and no line after it starts with
// whitespace. Returns why not, or null; stops at the blank line that ends the head. llhttp 8.1
// (every lenient flag off) lets each of these through somewhere: runs of SP in the request line,
// a CR plus any byte for the end of a field line with an empty value ("X-A:\rZX-B: 1" is two
// fields to llhttp, one to a reader that turns the bare CR into SP, RFC 9112 2.2). Two memchr per
// line, and a look at each byte of the request line only.
const char* MessageParser::checkHeadLines(const char* data, size_t len) {
  static constexpr const char* kBareCr = "CR not followed by LF in the request head";
  static constexpr const char* kBareLf = "bare LF in the request head";
  size_t i = 0;
  while (i < len) {
    switch (head_lines_) {
      case HeadLines::Start:  // empty lines (CRLF) before the request line: skipped (RFC 9112 2.2)
        if (data[i] == '\r') {
          head_lines_ = HeadLines::StartLf;
          ++i;
        } else if (data[i] == '\n') {
          return kBareLf;
        } else {
          head_lines_ = HeadLines::InLine;
          request_line_spaces_ = 0;
          after_space_ = true;  // a request line starting with SP is refused like "GET  /"
        }
        break;
      case HeadLines::StartLf:  // a bare CR is not an empty line
        if (data[i] != '\n') return kBareCr;
        head_lines_ = HeadLines::Start;
        ++i;
        break;
      case HeadLines::InLine: {
        if (last_was_cr_) {  // the previous input ended in a CR: only its LF may follow
          last_was_cr_ = false;
          if (data[i] != '\n') return kBareCr;
          if (const char* why = endLine()) return why;
          ++i;
          break;
        }
        const char* begin = data + i;
        const auto* lf = static_cast<const char*>(std::memchr(begin, '\n', len - i));
        const char* end = lf != nullptr ? lf : data + len;  // this input's part of the line
        const auto* cr =
            static_cast<const char*>(std::memchr(begin, '\r', static_cast<size_t>(end - begin)));
        if (cr != nullptr && cr != end - 1) return kBareCr;  // only the CR of the line's CRLF
        if (!in_header_lines_) {
          if (const char* why = checkRequestLineSpaces(begin, cr != nullptr ? cr : end)) return why;
        }
        if (lf == nullptr) {
          last_was_cr_ = cr != nullptr;
          return nullptr;
        }
        if (cr == nullptr) return kBareLf;
        if (const char* why = endLine()) return why;
        i = static_cast<size_t>(lf - data) + 1;
        break;
      }
      case HeadLines::LineStart:
        if (data[i] == '\r') {
          head_lines_ = HeadLines::EndLf;
          ++i;
        } else if (data[i] == '\n') {
          return kBareLf;
        } else if (data[i] == ' ' || data[i] == '\t') {
          if (!in_header_lines_) return "whitespace before the first header field";
          saw_fold_ = true;
          return "obsolete line folding in a header";
        } else {
          in_header_lines_ = true;
          head_lines_ = HeadLines::InLine;
        }
        break;
      case HeadLines::EndLf:
        if (data[i] != '\n') return kBareCr;
        head_lines_ = HeadLines::Done;
        return nullptr;
      case HeadLines::Done:
        return nullptr;
    }
  }
  return nullptr;
}

// A piece [begin, end) of the request line, without its CRLF.
const char* MessageParser::checkRequestLineSpaces(const char* begin, const char* end) {
  for (const char* c = begin; c < end; ++c) {
    if (*c != ' ') {
      after_space_ = false;
    } else if (after_space_ || ++request_line_spaces_ > 2) {
      return "request line parts not separated by exactly one SP";
    } else {
      after_space_ = true;
    }
  }
  return nullptr;
}

// The CRLF of a head line was seen: a request line must have had its two single SPs.
const char* MessageParser::endLine() {
  if (!in_header_lines_ && (request_line_spaces_ != 2 || after_space_)) {
    return "request line parts not separated by exactly one SP";
  }
  head_lines_ = HeadLines::LineStart;
  return nullptr;
}

int MessageParser::onMessageBegin(llhttp_t* p) {
  MessageParser* m = self(p);
  m->in_message_ = true;
  m->head_complete_ = false;
  m->head_too_large_ = false;
  m->head_bytes_ = 0;
  m->declared_length_ = 0;
  m->in_value_ = false;
  m->target_.clear();
  m->headers_.clear();
  return 0;
}

int MessageParser::onUrl(llhttp_t* p, const char* at, size_t len) {
  MessageParser* m = self(p);
  if (!m->countHeadBytes(len)) return HPE_USER;
  m->target_.append(at, len);
  return 0;
}

// Trailer fields (llhttp reads them for the chunked bodies it decodes: responses, and upgrade
// requests) are counted against the head limit and dropped: the proxy re-frames every body and
// ends it with an empty trailer section, and a trailer appended to headers() would be taken for
// a header field by whatever reads the head later (a buffered request's head is written after
// its body; checkRequestHead and the hop-by-hop rules have long run by then).
int MessageParser::onHeaderField(llhttp_t* p, const char* at, size_t len) {
  MessageParser* m = self(p);
  if (m->head_complete_) return m->countHeadBytes(len) ? 0 : HPE_USER;  // a trailer
  // Each header line costs its bytes plus ": " and CRLF, as on the wire.
  if (!m->countHeadBytes(len + (m->in_value_ || m->headers_.size() == 0 ? 4 : 0))) return HPE_USER;
  if (m->in_value_ || m->headers_.size() == 0) {
    m->headers_.beginName();
    m->in_value_ = false;
  }
  m->headers_.appendName(at, len);
  return 0;
}

int MessageParser::onHeaderValue(llhttp_t* p, const char* at, size_t len) {
  MessageParser* m = self(p);
  if (m->head_complete_) return m->countHeadBytes(len) ? 0 : HPE_USER;  // a trailer
  if (!m->countHeadBytes(len)) return HPE_USER;
  if (!m->in_value_) {
    m->headers_.beginValue();
    m->in_value_ = true;
  }
  m->headers_.appendValue(at, len);
  return 0;
}

int MessageParser::onHeaderValueComplete(llhttp_t* p) {
  MessageParser* m = self(p);
  if (m->head_complete_) return 0;  // a trailer
  if (!m->in_value_) {  // "Name:" with an empty value
    m->headers_.beginValue();
    m->in_value_ = true;
  }
  m->headers_.finishValue();
  return 0;
}

int MessageParser::onHeadersComplete(llhttp_t* p) {
  MessageParser* m = self(p);
  m->head_complete_ = true;
  m->head_bytes_ = 0;  // from here on, trailers count against the limit on their own
  m->declared_length_ = p->content_length;
  const int rc = m->events_->onHeadComplete();
  // A chunked request body is ours to decode: llhttp is told there is none, so it completes the
  // message with the head, and onMessageCompleteCb keeps it paused there. (An upgrade request
  // with a body stays with llhttp, which hands over to the tunnel after it.)
  if (m->type_ == HTTP_REQUEST && (p->flags & F_CHUNKED) != 0 && p->upgrade == 0 &&
      (rc == 0 || rc == kPauseParser)) {
    m->own_body_ = rc == kPauseParser ? OwnBody::AwaitResume : OwnBody::Decoding;
    m->chunked_ = ChunkedValidator(m->max_head_bytes_);  // the trailers count like a head
    return kSkipBody;
  }
  return rc;
}

int MessageParser::onBody(llhttp_t* p, const char* at, size_t len) {
  self(p)->events_->onBodyData(at, len);
  return 0;
}

int MessageParser::onMessageCompleteCb(llhttp_t* p) {
  MessageParser* m = self(p);
  if (m->own_body_ == OwnBody::AwaitResume || m->own_body_ == OwnBody::Decoding) {
    return HPE_PAUSED;  // only the head is done; the message is not
  }
  m->in_message_ = false;
  const int rc = m->events_->onMessageComplete();
  return m->type_ == HTTP_REQUEST && rc == 0 ? kPauseParser : rc;
}

ParseResult MessageParser::decodeChunkedBody(const char* data, size_t len, size_t offset) {
  ParseResult r;
  ChunkedValidator::Result d = chunked_.decode(data + offset, len - offset, this);
  switch (d.status) {
    case ChunkedValidator::Status::NeedMore:
      r.status = ParseStatus::NeedMore;
      r.consumed = len;
      return r;
    case ChunkedValidator::Status::Error:
      r.status = ParseStatus::Error;
      r.reason = chunked_.error();
      return r;
    case ChunkedValidator::Status::Done:
      break;
  }
  own_body_ = OwnBody::Finished;
  in_message_ = false;
  const int rc = events_->onMessageComplete();
  if (rc != 0 && rc != kPauseParser) {
    r.status = ParseStatus::Error;
    r.reason = "message complete callback error";
    return r;
  }
  r.status = ParseStatus::Paused;
  r.consumed = offset + d.consumed;
  return r;
}

ParseResult MessageParser::execute(const char* data, size_t len) {
  ParseResult r;
  if (type_ == HTTP_REQUEST && head_lines_ != HeadLines::Done) {
    if (const char* why = checkHeadLines(data, len)) {
      r.status = ParseStatus::Error;
      r.reason = why;
      return r;
    }
  }
  switch (own_body_) {
    case OwnBody::Off:
      break;
    case OwnBody::Decoding:
      return decodeChunkedBody(data, len, 0);
    case OwnBody::AwaitResume:
    case OwnBody::Finished:
      r.status = ParseStatus::Paused;  // as llhttp does when executed while paused
      return r;
  }
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  switch (err) {
    case HPE_OK:
      r.status = ParseStatus::NeedMore;
      r.consumed = len;
      return r;
    case HPE_PAUSED:
      r.status = ParseStatus::Paused;
      r.consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      // The head of a chunked request ended here: go on with its body unless the caller
      // asked to stop after the head.
      if (own_body_ == OwnBody::Decoding) return decodeChunkedBody(data, len, r.consumed);
      return r;
    case HPE_PAUSED_UPGRADE:
      r.status = ParseStatus::Upgraded;
      r.consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      return r;
    case HPE_PAUSED_H2_UPGRADE:  // "PRI * HTTP/2.0": HTTP/2 with prior knowledge
      r.status = ParseStatus::Error;
      r.reason = "HTTP/2 is not supported";
      r.error_status = 505;
      return r;
    default:
      r.status = head_too_large_ ? ParseStatus::HeadTooLarge : ParseStatus::Error;
      r.reason = llhttp_get_error_reason(&parser_);
      if (r.reason == nullptr) r.reason = llhttp_errno_name(err);
      r.consumed = 0;
      return r;
  }
}

void MessageParser::resume() {
  switch (own_body_) {
    case OwnBody::AwaitResume:
      own_body_ = OwnBody::Decoding;  // llhttp stays paused until the body is done
      return;
    case OwnBody::Decoding:
      return;
    case OwnBody::Finished:
      own_body_ = OwnBody::Off;
      break;
    case OwnBody::Off:
      break;
  }
  llhttp_resume(&parser_);
}

void MessageParser::resumeAfterUpgrade() { llhttp_resume_after_upgrade(&parser_); }

bool MessageParser::finish() {
  if (own_body_ == OwnBody::AwaitResume || own_body_ == OwnBody::Decoding) return false;
  return llhttp_finish(&parser_) == HPE_OK;
}

namespace {
class DetachedEvents final : public ParserEvents {
 public:
  int onHeadComplete() override { return -1; }
  void onBodyData(const char*, size_t) override {}
  int onMessageComplete() override { return -1; }
};
}  // namespace

ParserEvents& detachedParserEvents() {
  static DetachedEvents events;  // stateless: shared by every parser without an owner
  return events;
}

RequestFacts requestFactsOf(const MessageParser& p) {
  RequestFacts facts;
  facts.method = p.method();
  facts.target = p.target();
  facts.http_major = p.httpMajor();
  facts.http_minor = p.httpMinor();
  facts.has_transfer_encoding = p.hasTransferEncoding();
  facts.saw_line_folding = p.sawLineFolding();
  return facts;
}

}  // namespace loopguard::http
