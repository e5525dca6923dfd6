// One side of an HTTP/1.1 connection: the socket; the llhttp parser of the messages it receives;
// the output batch of what it sends; the read block it lends to the other side's write; at most
// one write in flight; read pacing, so that what it holds stays small when the other side does
// not drain it (watermarks).
//
// Whoever drives the stream is its StreamHandler: its connection between messages, the Exchange
// during one. Switching handlers is one call (setHandler); nobody forwards the stream's parser
// or socket events by hand.
//
// Every write completes through StreamHandler::onStreamWritten, from the loop: a write the kernel
// took whole at once (uv_try_write: no uv_write, no epoll_ctl) is completed from the ready
// queue, in the same loop iteration; never from inside flush().
//
// The parser and the output batch (StreamParts) are attached, not owned: a client connection
// takes them from a pool while a request is on it, so an idle keep-alive connection holds only
// its socket.
#pragma once

#include <uv.h>

#include <cstddef>
#include <string_view>

#include "common/net/socket.h"
#include "common/uv/loop.h"
#include "proxy/http/message_parser.h"
#include "proxy/http/parser_action.h"
#include "proxy/output_batch.h"

namespace loopguard::proxy {

class HttpStream;

class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  // Parser events, from inside a parse round. Body spans point into the stream's read block:
  // to keep one past the callback, let another stream borrow() the block.
  virtual http::ParserAction onStreamHead(HttpStream& stream) = 0;
  virtual http::ParserAction onStreamBody(HttpStream& stream, const char* at, size_t len) = 0;
  virtual http::ParserAction onStreamMessageEnd(HttpStream& stream) = 0;
  // A parse round ended, outside of llhttp: the input ran out (NeedMore), a callback paused,
  // the message was an upgrade, or the input is malformed (HeadTooLarge, Error). The place to
  // act on what the callbacks noted: flush the other side, answer, resume.
  virtual void onStreamParsed(HttpStream& stream, const http::ParseResult& result) = 0;
  // New bytes while the stream does not parse (raw: a tunnel, or nobody expects any).
  virtual void onStreamData(HttpStream& stream) { (void)stream; }
  // The write in flight completed (status < 0: failed). Always from the loop.
  virtual void onStreamWritten(HttpStream& stream, int status) = 0;
  // The peer closed or reset (UV_EOF or a read error). Input already read stays in input().
  virtual void onStreamEof(HttpStream& stream, int status) = 0;
  virtual void onStreamConnected(HttpStream& stream, int status) { (void)stream, (void)status; }
  // The close() asked for is done (net::SocketEvents::onSocketClosed): the owner that closed
  // the stream may delete itself from here.
  virtual void onStreamClosed(HttpStream& stream) { (void)stream; }
};

// A stream's message state, attached while it is in use. The parser's events come through
// here to the stream it is attached to, so an idle stream carries no parser interface.
struct StreamParts : private http::ParserEvents {
  StreamParts(llhttp_type_t type, uint64_t max_head_bytes);
  http::MessageParser parser;
  OutputBatch out;

 private:
  friend class HttpStream;
  int onHeadComplete() override;
  void onBodyData(const char* at, size_t len) override;
  int onMessageComplete() override;
  void onWritten();
  HttpStream* stream = nullptr;
  net::Socket* lender = nullptr;  // whose read block `out` points into
  // A write the kernel took at once completes from here (see HttpStream::flush).
  uv::ReadyCall written{this, &uv::bindMethod<StreamParts, &StreamParts::onWritten>};
  int written_status = 0;
};

class HttpStream final : private net::SocketEvents {
 public:
  HttpStream(uv_loop_t* loop, net::BufferPool& buffers, StreamHandler& handler);
  ~HttpStream() override;
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;

  void setHandler(StreamHandler& handler) { handler_ = &handler; }
  net::Socket& socket() { return socket_; }
  uv_loop_t* loop() const { return socket_.loop(); }

  // ---- Message state
  void attach(StreamParts& parts);
  // Gives the parts back (nothing in flight: not writing). Their parser stops delivering here.
  StreamParts* detach();
  bool attached() const { return parts_ != nullptr; }
  StreamParts* parts() const { return parts_; }
  http::MessageParser& parser() { return parts_->parser; }
  OutputBatch& out() { return parts_->out; }

  // ---- Reading
  // Parses what has arrived, then reads on and parses as it comes, until a callback pauses (or
  // pause()). A call from inside a parse round takes effect when that round ends.
  void resume();
  // Stops parsing; reading goes on until the read block is full, so a peer that closes is still
  // noticed. What arrives meanwhile waits in the block.
  void pause() { paused_ = true; }
  bool paused() const { return paused_; }
  // Raw: bytes are not parsed but announced (onStreamData), for the caller to take from
  // input() and consume(). For a tunnel after a 101, and for a connection that expects no
  // bytes at all (an idle upstream connection). Leaving raw mode leaves the stream paused.
  void setRaw(bool raw = true);
  bool raw() const { return raw_; }
  std::string_view input() const { return socket_.input(); }
  void consume(size_t n) { socket_.consume(n); }
  void readStart() { socket_.readStart(); }
  // The peer has closed its side (its EOF, or a read error, was seen).
  bool peerClosed() const { return peer_closed_; }

  // ---- Writing
  // out() holds spans of `lender`'s read block: the block stays lent until the write that
  // carries them ends (or the output is discarded, or this stream closes).
  void borrow(HttpStream& lender) { borrow(lender.socket_); }
  void borrow(net::Socket& lender);
  // Writes out(); one write in flight. Completion: onStreamWritten, always from the loop.
  // `paced`: the stream whose bytes these are has more to send through this one, so its reads
  // are paced to how this write went (net::paceReads): a peer that does not read stops the other
  // side's reads instead of growing what the proxy holds.
  // A write the kernel took whole frees out() (and the lender's block) at once; until its
  // completion runs, more may be queued and flushed: it goes out at once, and one completion
  // covers both.
  void flush(HttpStream* paced = nullptr);
  // A write is in flight (its completion not yet run).
  bool writing() const { return writing_; }
  // A write waits for the peer: the kernel did not take it whole.
  bool busy() const { return writing_ && !(parts_ != nullptr && parts_->written.posted()); }
  // Drops what out() holds and was not written yet.
  void discardOutput();
  int shutdown() { return socket_.shutdown(); }

  // Closes the socket; `owner` becomes the handler and hears onStreamClosed from its close
  // callback. A write in flight completes first (UV_ECANCELED), to `owner` as well.
  void close(StreamHandler& owner);
  bool closed() const { return socket_.closed(); }

 private:
  void parse();
  void parseOnce();
  friend struct StreamParts;
  void completeWrite(int status);
  void releaseLender();
  void freeWrittenOutput();
  static http::ParserAction actionOf(int rc);
  static int codeOf(http::ParserAction action, bool head);

  // SocketEvents
  void onSocketRead() override;
  void onSocketEof(int status) override;
  void onSocketWritten(int status) override;
  void onSocketConnected(int status) override;
  void onSocketClosed() override { handler_->onStreamClosed(*this); }
  // The parser's events, through the attached parts.
  int onHeadComplete();
  void onBodyData(const char* at, size_t len);
  int onMessageComplete();

  net::Socket socket_;
  StreamHandler* handler_;
  StreamParts* parts_ = nullptr;
  bool paused_ = true;
  bool raw_ = false;
  bool parsing_ = false;  // a parse round is on the stack
  bool reparse_ = false;  // ... and was asked to go round again
  bool writing_ = false;
  bool write_copied_ = false;  // the write in flight no longer needs out()
  bool peer_closed_ = false;
  bool body_failed_ = false;  // onStreamBody said Fail: the round ends in an error
};

}  // namespace loopguard::proxy
