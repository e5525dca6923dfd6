// One keep-alive connection the advisor's probe (S3) sends its trivial requests on: one at a
// time, `GET <probe_path>`, the response read and dropped. Its owner learns when a head
// arrives (the probe's completion, timed like every other), when it may send again, and when
// the connection is gone. Its owner holds it (an OwnedList) and retires it when its socket's
// close callback says it is closed; after close() it calls nothing else.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>

#include "common/intrusive_list.h"
#include "common/net/buffer_pool.h"
#include "common/net/socket.h"
#include "proxy/advice/process_locator.h"
#include "proxy/http/message_parser.h"

namespace loopguard::advice {

class ProbeConnection;

class ProbeOwner {
 public:
  virtual ~ProbeOwner() = default;
  virtual void onProbeConnected(ProbeConnection& probe) = 0;
  virtual void onProbeHead(ProbeConnection& probe) = 0;
  // The connection failed or the peer closed it; it is closing (no other call follows but
  // onProbeClosed).
  virtual void onProbeGone(ProbeConnection& probe) = 0;
  // Its socket is closed (after close() or onProbeGone()): the owner retires it now.
  virtual void onProbeClosed(ProbeConnection& probe) = 0;
};

class ProbeConnection final : public ListNode<ProbeConnection>,
                              private net::SocketEvents,
                              private http::ParserEvents {
 public:
  enum class State { Connecting, Idle, WaitingHead, ReadingBody, Closing };

  ProbeConnection(uv_loop_t* loop, net::BufferPool& buffers, ProbeOwner& owner);
  // Only its owner's set destroys it, once onProbeClosed() was called.
  ~ProbeConnection() override = default;
  ProbeConnection(const ProbeConnection&) = delete;
  ProbeConnection& operator=(const ProbeConnection&) = delete;

  // Starts connecting to `to` (its peer address); onProbeConnected() follows, or onProbeGone().
  int connect(const SocketPeer& to);
  // Sends one probe if idle; false otherwise.
  bool send(const std::string& request);
  // Starts closing; onProbeClosed() follows from the close callback.
  void close();

  State state() const { return state_; }
  bool idle() const { return state_ == State::Idle; }
  bool closing() const { return state_ == State::Closing; }
  bool connected() const { return connected_; }  // the connect succeeded at some point
  int fd() const;

  int32_t group = -1;     // the process group it was found to reach (the owner's bookkeeping)
  std::string address;    // the endpoint address it was opened to
  std::string upstream;

 private:
  void onSocketConnected(int status) override;
  void onSocketRead() override;
  void onSocketEof(int status) override;
  void onSocketWritten(int status) override;
  void onSocketClosed() override;
  int onHeadComplete() override;
  void onBodyData(const char*, size_t) override {}
  int onMessageComplete() override;
  void gone();

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
