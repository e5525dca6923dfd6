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

// Every line of a request head ends in CRLF, and none after the request line starts with
// whitespace. Returns why not, or null; stops at the blank line that ends the head. One memchr
// per line: a CR that is not followed by LF inside a line is llhttp's to refuse (strict mode
// does), so only the LFs need looking at here.
const char* MessageParser::checkHeadLines(const char* data, size_t len) {
  size_t i = 0;
  while (i < len) {
    switch (head_lines_) {
      case HeadLines::Start:  // empty lines before the request line are skipped (RFC 9112 2.2)
        if (data[i] == '\r') {
          head_lines_ = HeadLines::StartLf;
          ++i;
        } else if (data[i] == '\n') {
          return "bare LF in the request head";
        } else {
          head_lines_ = HeadLines::InLine;
        }
        break;
      case HeadLines::StartLf:
        if (data[i] != '\n') return "CR not followed by LF in the request head";
        head_lines_ = HeadLines::Start;
        ++i;
        break;
      case HeadLines::InLine: {
        const void* lf = std::memchr(data + i, '\n', len - i);
        if (lf == nullptr) {
          last_was_cr_ = data[len - 1] == '\r';
          return nullptr;
        }
        const size_t at = static_cast<size_t>(static_cast<const char*>(lf) - data);
        if (!(at > i ? data[at - 1] == '\r' : last_was_cr_)) return "bare LF in the request head";
        head_lines_ = HeadLines::LineStart;
        i = at + 1;
        break;
      }
      case HeadLines::LineStart:
        if (data[i] == '\r') {
          head_lines_ = HeadLines::EndLf;
          ++i;
        } else if (data[i] == '\n') {
          return "bare LF in the request head";
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
        if (data[i] != '\n') return "CR not followed by LF in the request head";
        head_lines_ = HeadLines::Done;
        return nullptr;
      case HeadLines::Done:
        return nullptr;
    }
  }
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

int MessageParser::onHeaderField(llhttp_t* p, const char* at, size_t len) {
  MessageParser* m = self(p);
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

}  // namespace loopguard::http
