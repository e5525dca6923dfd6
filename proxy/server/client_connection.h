// One client connection: its HttpStream (socket, and from a request's first byte on, the request
// parser and output batch) and the connection-level timers (header, idle, lingering). Requests
// are handled one at a time in arrival order, which is what keeps pipelined responses in order:
// the stream pauses after each head and message, and the connection takes the stream back when
// the Exchange for it is done.
//
// Who drives the stream: the connection between requests and while a head arrives; the
// Exchange from a complete head until it is done (onExchangeDone). It knows nothing about
// routes.
//
// States: AwaitingHead (idle between requests: the stream is raw and holds only its socket; or
// inside a head: the request state is taken), Exchanging, Lingering (answered and half-closed;
// what the client still sends is dropped), Closing.
//
// Owned by the ConnectionSet; once its socket has closed it asks the set to retire it (deferred
// delete at the end of the loop turn).
#pragma once

#include <uv.h>

#include <string>

#include "common/intrusive_list.h"
#include "common/owned_list.h"
#include "common/uv/timeout_queue.h"
#include "proxy/proxy_context.h"
#include "proxy/server/request_state.h"
#include "proxy/session/exchange.h"
#include "proxy/stream/http_stream.h"

namespace loopguard::proxy {

class ConnectionSet;

// What every client connection of one server shares: one reference per connection instead of
// three (an idle connection is mostly its own size).
struct ClientServices {
  ProxyContext& context;
  ConnectionSet& set;
  RequestStatePool& states;
};

// Allocated in the loop's slab (common/slab.h), as its TCP handle is: packed, and apart from the
// heap that requests churn, so the memory of a burst of requests goes back once it is over.
class ClientConnection final : public ListNode<ClientConnection>,
                               public SlabAllocated,
                               private StreamHandler {
 public:
  enum class State : uint8_t {
    AwaitingHead,  // between requests or inside a head
    Exchanging,    // a request is with the Exchange
    Lingering,     // answered and half-closed; the client's input is read and dropped
    Closing,       // socket closing; nothing else happens
  };

  // Lingering close (nginx: lingering_timeout 5s, lingering_time 30s). After a refusal the
  // proxy shuts down its sending side, so the answer is followed by a FIN, and reads and drops
  // whatever the client still sends until it closes, goes quiet for kLingerQuietMs, or
  // kLingerMaxMs have passed. Closing at once instead, with unread input, makes the kernel send
  // a reset, which can destroy the answer before the client reads it. A lingering connection
  // holds no request state, no slot and no upstream connection: only its socket and its place
  // in the lingering queue.
  static constexpr uint64_t kLingerQuietMs = 5'000;
  static constexpr uint64_t kLingerMaxMs = 30'000;

  explicit ClientConnection(ClientServices& services);
  ~ClientConnection() override;
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  int accept(uv_stream_t* server);
  // The socket is open: wait for the first request (or open() a connected fd first; tests).
  void start();
  HttpStream& stream() { return stream_; }

  // Drain: close now if idle between requests; otherwise the current exchange answers with
  // "Connection: close" and the connection ends after it.
  void closeIfIdle();
  void close();
  State state() const { return state_; }

 private:
  friend struct RequestState;
  // StreamHandler: while no exchange runs (between requests, inside a head, lingering).
  http::ParserAction onStreamHead(HttpStream& stream) override;
  http::ParserAction onStreamBody(HttpStream& stream, const char* at, size_t len) override;
  http::ParserAction onStreamMessageEnd(HttpStream& stream) override;
  void onStreamParsed(HttpStream& stream, const http::ParseResult& result) override;
  void onStreamData(HttpStream& stream) override;
  void onStreamWritten(HttpStream& stream, int status) override;
  void onStreamEof(HttpStream& stream, int status) override;
  void onStreamClosed(HttpStream& stream) override;
  // The exchange is done with the stream (ExchangeClient::done).
  void onExchangeDone(AfterExchange after);
  static void onExchangeDone(void* self, AfterExchange after) {
    static_cast<ClientConnection*>(self)->onExchangeDone(after);
  }

  // A request's first byte (or a pipelined one, already buffered): the head must arrive within
  // timeouts.header from here.
  void beginHead();
  void onPipelined();
  void takeRequestState();
  void releaseRequestState();
  // Taken when a request's first byte arrives: the parts attached to the stream.
  RequestState* request() const { return static_cast<RequestState*>(stream_.parts()); }
  // A request refused before any Exchange saw it; `linger`: the client may still be sending.
  void rejectRequest(int status, const char* message, bool linger);
  void linger();
  void armTimeout(uint64_t ms) { timeout_.arm(services_.context.timeouts.of(ms)); }
  void onTimeout();

  ClientServices& services_;
  HttpStream stream_;
  // One deadline at a time, in the context's queue for its duration: timeouts.header while a
  // head arrives (or before the first byte), timeouts.idle between requests, kLingerQuietMs
  // while lingering (re-armed by each read). An idle connection carries no timer handle.
  uv::Timeout timeout_{this, &uv::bindMethod<ClientConnection, &ClientConnection::onTimeout>};
  // Packed together: every idle connection carries them.
  // Lingering ends by then at the latest: the loop's clock in ms, its low 32 bits (compared
  // wrap-safe: a linger lasts seconds, the clock wraps after 49 days).
  uint32_t linger_until_ = 0;
  net::PeerAddress peer_;
  State state_ = State::AwaitingHead;
  bool in_head_ = false;  // a head's first byte has arrived: timeouts.header runs
  bool close_after_write_ = false;
};

// Every open client connection, for max_connections and drain. It owns them.
class ConnectionSet {
 public:
  ClientConnection& open(ClientServices& services) {
    return connections_.emplaceIn(uv::Loop::of(services.context.loop).slab(sizeof(ClientConnection)),
                                  services);
  }
  // A connection whose socket has closed leaves the set now and is destroyed at the end of the
  // loop turn.
  void retire(uv_loop_t* loop, ClientConnection& c);
  size_t size() const { return connections_.size(); }
  template <class Fn>
  void forEach(Fn&& fn) {
    connections_.forEach(std::forward<Fn>(fn));
  }
  // Called whenever a connection closes (the listener resumes accepting, drain checks done).
  void (*on_removed)(void* ctx) = nullptr;
  void* on_removed_ctx = nullptr;

 private:
  OwnedList<ClientConnection> connections_;
};

}  // namespace loopguard::proxy
