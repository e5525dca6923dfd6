// One keep-alive connection the advisor's probe (S3) sends its trivial requests on: one at a
// time, `GET <probe_path>`, the response read and dropped. Its owner learns when a head
// arrives (the probe's completion, timed like every other), when it may send again, and when
// the connection is gone. Deletes itself after close(), from the socket's close callback; after
// close() it calls nobody.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "proxy/advice/process_locator.h"
#include "proxy/http/message_parser.h"
#include "common/net/buffer_pool.h"
#include "common/net/socket.h"

namespace loopguard::advice {

class ProbeConnection;

class ProbeOwner {
 public:
  virtual ~ProbeOwner() = default;
  virtual void onProbeConnected(ProbeConnection& probe) = 0;
  virtual void onProbeHead(ProbeConnection& probe) = 0;
  // The connection failed or closed; it deletes itself right after (do not touch it again).
  virtual void onProbeGone(ProbeConnection& probe) = 0;
};

class ProbeConnection final : private net::SocketEvents, private http::ParserEvents {
 public:
  enum class State { Connecting, Idle, WaitingHead, ReadingBody, Closing };

  ProbeConnection(uv_loop_t* loop, net::BufferPool& buffers, ProbeOwner& owner);
  ProbeConnection(const ProbeConnection&) = delete;
  ProbeConnection& operator=(const ProbeConnection&) = delete;

  // Starts connecting to `to` (its peer address); onProbeConnected() follows, or onProbeGone().
  int connect(const SocketPeer& to);
  // Sends one probe if idle; false otherwise.
  bool send(const std::string& request);
  void close();

  State state() const { return state_; }
  bool idle() const { return state_ == State::Idle; }
  bool connected() const { return connected_; }  // the connect succeeded at some point
  int fd() const;

  int32_t group = -1;     // the process group it was found to reach (the owner's bookkeeping)
  std::string address;    // the endpoint address it was opened to
  std::string upstream;

 private:
  ~ProbeConnection() override = default;
  void onSocketConnected(int status) override;
  void onSocketRead() override;
  void onSocketEof(int status) override;
  void onSocketWritten(int status) override;
  int onHeadComplete() override;
  void onBodyData(const char*, size_t) override {}
  int onMessageComplete() override;
  void gone();
  static void onClosed(void* self);

  ProbeOwner& owner_;
  net::Socket socket_;
  http::MessageParser parser_;
  std::string out_;
  State state_ = State::Connecting;
  bool message_done_ = false;
  bool keep_alive_ = true;
  bool connected_ = false;
};

}  // namespace loopguard::advice
