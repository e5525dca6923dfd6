#include "proxy/stream/http_stream.h"

#include <cassert>
#include <utility>

namespace loopguard::proxy {

StreamParts::StreamParts(llhttp_type_t type, uint64_t max_head_bytes)
    : parser(type, http::detachedParserEvents(), max_head_bytes) {}

void StreamParts::onWritten() { stream->completeWrite(written_status); }
int StreamParts::onHeadComplete() { return stream->onHeadComplete(); }
void StreamParts::onBodyData(const char* at, size_t len) { stream->onBodyData(at, len); }
int StreamParts::onMessageComplete() { return stream->onMessageComplete(); }

HttpStream::HttpStream(uv_loop_t* loop, net::BufferPool& buffers, StreamHandler& handler)
    : socket_(loop, buffers, *this), handler_(&handler) {}

HttpStream::~HttpStream() {
  releaseLender();
  if (parts_ != nullptr) detach();
}

// ---------------------------------------------------------------------------------------------
// Message state

void HttpStream::attach(StreamParts& parts) {
  assert(parts_ == nullptr);
  parts_ = &parts;
  parts.stream = this;
  parts.parser.setEvents(parts);
}

StreamParts* HttpStream::detach() {
  if (writing_ && parts_ != nullptr && parts_->written.posted()) {
    // The kernel took the last write whole: it is over, and its completion, still queued, goes
    // with the parts (whoever detaches is done with this stream's writes).
    writing_ = false;
    write_copied_ = false;
  }
  assert(!writing_ && "detach with a write in flight");
  releaseLender();
  StreamParts* parts = std::exchange(parts_, nullptr);
  if (parts != nullptr) {
    parts->written.cancel();
    parts->out.clear();
    parts->parser.setEvents(http::detachedParserEvents());
    parts->stream = nullptr;
  }
  return parts;
}

// ---------------------------------------------------------------------------------------------
// Reading

void HttpStream::resume() {
  paused_ = false;
  if (parts_ != nullptr) parts_->parser.resume();
  parse();
}

void HttpStream::setRaw(bool raw) {
  raw_ = raw;
  paused_ = true;
  if (raw) socket_.readStart();
}

void HttpStream::parse() {
  if (parsing_) {
    reparse_ = true;  // the running round goes on once its callback returns
    return;
  }
  parsing_ = true;
  do {
    reparse_ = false;
    parseOnce();
  } while (reparse_ && !paused_);
  parsing_ = false;
}

void HttpStream::parseOnce() {
  if (paused_ || raw_ || parts_ == nullptr) return;
  std::string_view in = socket_.input();
  if (in.empty()) {
    socket_.readStart();
    return;
  }
  body_failed_ = false;
  StreamParts* parts = parts_;
  http::ParseResult r = parts->parser.execute(in.data(), in.size());
  if (parts_ != parts) return;  // a callback gave the parts back: the round is void
  if (body_failed_ && r.status != http::ParseStatus::Error) {
    r.status = http::ParseStatus::Error;
    r.reason = "refused by the receiver";
  }
  switch (r.status) {
    case http::ParseStatus::NeedMore:
      socket_.consume(r.consumed);
      socket_.readStart();
      break;
    case http::ParseStatus::Paused:
    case http::ParseStatus::Upgraded:
      socket_.consume(r.consumed);
      paused_ = true;
      break;
    case http::ParseStatus::HeadTooLarge:
    case http::ParseStatus::Error:
      paused_ = true;  // nothing more is parsed; the handler decides what the input means
      break;
  }
  handler_->onStreamParsed(*this, r);
}

void HttpStream::onSocketRead() {
  if (raw_) {
    handler_->onStreamData(*this);
    return;
  }
  if (!paused_) parse();
}

void HttpStream::onSocketEof(int status) {
  peer_closed_ = true;
  handler_->onStreamEof(*this, status);
}

void HttpStream::onSocketConnected(int status) { handler_->onStreamConnected(*this, status); }

int HttpStream::codeOf(http::ParserAction action, bool head) {
  switch (action) {
    case http::ParserAction::Continue: return 0;
    case http::ParserAction::Pause: return http::kPauseParser;
    case http::ParserAction::SkipBody: return head ? http::kSkipBody : 0;
    case http::ParserAction::Fail: return -1;
  }
  return -1;
}

int HttpStream::onHeadComplete() { return codeOf(handler_->onStreamHead(*this), true); }

void HttpStream::onBodyData(const char* at, size_t len) {
  if (body_failed_) return;
  if (handler_->onStreamBody(*this, at, len) == http::ParserAction::Fail) body_failed_ = true;
}

int HttpStream::onMessageComplete() { return codeOf(handler_->onStreamMessageEnd(*this), false); }

// ---------------------------------------------------------------------------------------------
// Writing

void HttpStream::borrow(net::Socket& lender) {
  assert(parts_ != nullptr && "only a stream with an output batch borrows");
  if (parts_->lender == &lender) return;
  assert(parts_->lender == nullptr && "out() borrows from one stream at a time");
  parts_->lender = &lender;
  lender.lend();
}

void HttpStream::releaseLender() {
  if (parts_ == nullptr) return;
  if (net::Socket* lender = std::exchange(parts_->lender, nullptr)) lender->unlend();
}

void HttpStream::discardOutput() {
  // A write that waits for the peer owns the batch until it completes; one the kernel took
  // whole freed it already, and what is there now was never sent.
  if (parts_ == nullptr || busy()) return;
  parts_->out.clear();
  releaseLender();
}

void HttpStream::flush(HttpStream* paced) {
  if (busy() || parts_ == nullptr || parts_->out.empty()) return;
  const auto& bufs = parts_->out.buffers();
  size_t bytes = parts_->out.bytes();
  // A write the kernel took whole may still have its completion queued: this one joins it.
  bool joined = writing_;
  writing_ = true;
  net::Socket::WriteStatus status =
      socket_.writeNow(bufs.data(), static_cast<unsigned>(bufs.size()));
  if (paced != nullptr) net::paceReads(paced->socket_, socket_, status, bytes);
  switch (status) {
    case net::Socket::WriteStatus::Pending:
      if (joined) parts_->written.cancel();  // onSocketWritten completes both
      return;  // onSocketWritten follows
    case net::Socket::WriteStatus::Copied:
      // The socket holds what is left: the batch and the lender's read block are free now (a
      // large block behind a stalled write goes back to the pool). onSocketWritten follows.
      if (joined) parts_->written.cancel();
      freeWrittenOutput();
      return;
    case net::Socket::WriteStatus::Done:
      // The kernel took it all, with no uv_write and no epoll_ctl. The batch and the lender's
      // block are free now (bytes must not pile up in a block lent to a finished write); the
      // completion still comes from the loop (the ready queue runs in this same iteration),
      // not from here.
      freeWrittenOutput();
      if (!joined) parts_->written_status = 0;
      parts_->written.post(loop());
      return;
    case net::Socket::WriteStatus::Error:
      parts_->written_status = UV_EPIPE;
      parts_->written.post(loop());
      return;
  }
}

void HttpStream::freeWrittenOutput() {
  parts_->out.clear();
  releaseLender();
  write_copied_ = true;  // what out() holds from now on is still to be sent
}

void HttpStream::onSocketWritten(int status) {
  if (socket_.closed()) return;  // cancelled by close(): its owner is done with it
  completeWrite(status);
}

void HttpStream::completeWrite(int status) {
  writing_ = false;
  // After a copied write the batch holds only what was queued behind it: still to be sent.
  if (parts_ != nullptr && !std::exchange(write_copied_, false)) parts_->out.clear();
  releaseLender();
  handler_->onStreamWritten(*this, status);
}

void HttpStream::close(StreamHandler& owner) {
  handler_ = &owner;
  // uv_close stops every write at once: whatever this stream borrowed is not read any more.
  socket_.close();
  if (parts_ != nullptr) parts_->written.cancel();
  writing_ = false;
  write_copied_ = false;
  releaseLender();
}

}  // namespace loopguard::proxy
