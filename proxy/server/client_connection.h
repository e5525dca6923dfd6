// One client connection: owns the socket, the llhttp request parser and the connection-level
// timers (header, idle, lingering). Requests are handled one at a time in arrival order, which
// is what keeps pipelined responses in order: the parser pauses after each message and resumes
// when the Exchange for it is done. It knows nothing about routes: each request goes to the
// Exchange.
#pragma once

#include <uv.h>

#include <string>

#include "proxy/session/exchange.h"
#include "proxy/server/request_state.h"
#include "proxy/http/message_parser.h"
#include "common/net/socket.h"
#include "proxy/proxy_context.h"
#include "common/uv/timeout_queue.h"

namespace loopguard::proxy {

class ConnectionSet;

// What every client connection of one server shares: one reference per connection instead of
// three (an idle connection is mostly its own size).
struct ClientServices {
  ProxyContext& context;
  ConnectionSet& set;
  RequestStatePool& states;
};

// How a connection goes on once an exchange is done with it.
enum class AfterExchange {
  KeepAlive,  // read the next request
  Close,      // nothing more will come (or nothing more matters): close now
  Reset,      // given up on (it stopped reading): close now, dropping what the kernel still holds
  Linger,     // the client may still be sending: drain its input for a while, then close
};

class ClientConnection final : private net::SocketEvents, private http::ParserEvents {
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
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  int accept(uv_stream_t* server);
  void start();

  // From the Exchange.
  void onExchangeDone(AfterExchange after);
  net::Socket& socket() { return socket_; }
  http::MessageParser& parser() { return request_->parser; }  // only while a request is on
  const std::string& peerIp() const { return peer_ip_; }

  // Drain: close now if idle between requests; otherwise the current exchange answers with
  // "Connection: close" and the connection ends after it.
  void closeIfIdle();
  void close();
  State state() const { return state_; }

  // Intrusive membership of the ConnectionSet.
  ClientConnection* set_prev = nullptr;
  ClientConnection* set_next = nullptr;

 private:
  ~ClientConnection();
  // SocketEvents
  void onSocketRead() override;
  void onSocketEof(int status) override;
  void onSocketWritten(int status) override;
  // ParserEvents: the head pauses the parser; the body and the end go to the Exchange.
  int onHeadComplete() override;
  void onBodyData(const char* at, size_t len) override;
  int onMessageComplete() override;

  void parseHeads();
  void parseHeadsLoop();
  bool inMessage() const { return request_ != nullptr && request_->parser.inMessage(); }
  void takeRequestState();
  void releaseRequestState();
  // A request refused before any Exchange saw it; `linger`: the client may still be sending.
  void rejectRequest(int status, const char* message, bool linger);
  void linger();
  void armTimeout(uint64_t ms) { timeout_.arm(services_.context.timeouts.of(ms)); }
  void onTimeout();
  static void onClosed(void* self);

  ClientServices& services_;
  net::Socket socket_;
  // One deadline at a time, in the context's queue for its duration: timeouts.header while a
  // head arrives (or before the first byte), timeouts.idle between requests, kLingerQuietMs
  // while lingering (re-armed by each read). An idle connection carries no timer handle.
  uv::Timeout timeout_{this, &uv::bindMethod<ClientConnection, &ClientConnection::onTimeout>};
  RequestState* request_ = nullptr;  // taken when a request's first byte arrives
  State state_ = State::AwaitingHead;
  bool head_timer_armed_ = false;
  bool in_parse_loop_ = false;  // parseHeads() is on the stack: it picks up pipelined input
  bool close_after_write_ = false;
  // The last bytes of the head seen so far: llhttp accepts a bare LF as the head's final line
  // ending, so the proxy checks that the head really ends in CRLF CRLF.
  char head_tail_[4] = {0, 0, 0, 0};
  uint64_t linger_until_ = 0;     // lingering ends by then at the latest
  void noteHeadBytes(std::string_view bytes);
  void onPipelined();
  friend struct RequestState;
  std::string peer_ip_;
  // A response this class writes itself (malformed request, header timeout): rare, so only
  // allocated when needed.
  std::unique_ptr<std::string> out_;
};

// Every open client connection, for max_connections and drain.
class ConnectionSet {
 public:
  void add(ClientConnection* c);
  void remove(ClientConnection* c);
  size_t size() const { return size_; }
  template <class Fn>
  void forEach(Fn&& fn) {
    for (ClientConnection* c = head_; c != nullptr;) {
      ClientConnection* next = c->set_next;
      fn(c);
      c = next;
    }
  }
  // Called whenever a connection closes (the listener resumes accepting, drain checks done).
  void (*on_removed)(void* ctx) = nullptr;
  void* on_removed_ctx = nullptr;

 private:
  ClientConnection* head_ = nullptr;
  size_t size_ = 0;
};

}  // namespace loopguard::proxy
