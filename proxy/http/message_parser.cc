#include "proxy/http/message_parser.h"

namespace loopguard::http {

namespace {
MessageParser* self(llhttp_t* p) { return static_cast<MessageParser*>(p->data); }
}  // namespace

MessageParser::MessageParser(llhttp_type_t type, ParserEvents& events, uint64_t max_head_bytes)
    : events_(&events), max_head_bytes_(max_head_bytes) {
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
}

bool MessageParser::countHeadBytes(size_t len) {
  head_bytes_ += len;
  if (head_bytes_ > max_head_bytes_) {
    head_too_large_ = true;
    return false;
  }
  return true;
}

int MessageParser::onMessageBegin(llhttp_t* p) {
  MessageParser* m = self(p);
  m->in_message_ = true;
  m->head_complete_ = false;
  m->head_bytes_ = 0;
  m->declared_length_ = 0;
  m->in_value_ = false;
  m->saw_fold_ = false;
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
  } else if (!(m->last_value_end_ == m->prev_exec_end_ && at == m->exec_begin_)) {
    // llhttp hands out an obs-folded line as a second piece of the same value; a genuine
    // continuation only happens when the value was split between two reads.
    m->saw_fold_ = true;
  }
  m->last_value_end_ = at + len;
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
  return m->events_->onHeadComplete();
}

int MessageParser::onBody(llhttp_t* p, const char* at, size_t len) {
  self(p)->events_->onBodyData(at, len);
  return 0;
}

int MessageParser::onMessageCompleteCb(llhttp_t* p) {
  MessageParser* m = self(p);
  m->in_message_ = false;
  return m->events_->onMessageComplete();
}

ParseResult MessageParser::execute(const char* data, size_t len) {
  exec_begin_ = data;
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  prev_exec_end_ = data + len;
  ParseResult r;
  switch (err) {
    case HPE_OK:
      r.status = ParseStatus::NeedMore;
      r.consumed = len;
      return r;
    case HPE_PAUSED:
      r.status = ParseStatus::Paused;
      r.consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      return r;
    case HPE_PAUSED_UPGRADE:
      r.status = ParseStatus::Upgraded;
      r.consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      return r;
    default:
      r.status = head_too_large_ ? ParseStatus::HeadTooLarge : ParseStatus::Error;
      r.reason = llhttp_get_error_reason(&parser_);
      if (r.reason == nullptr) r.reason = llhttp_errno_name(err);
      r.consumed = 0;
      return r;
  }
}

void MessageParser::resume() { llhttp_resume(&parser_); }

void MessageParser::resumeAfterUpgrade() { llhttp_resume_after_upgrade(&parser_); }

bool MessageParser::finish() { return llhttp_finish(&parser_) == HPE_OK; }

}  // namespace loopguard::http
