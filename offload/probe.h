// One readiness check of a starting worker over its own socket: a connect, then (with
// ready.path) an HTTP GET whose status must be below 500. A minimal client on purpose: it only
// needs the status line, and it must never be mistaken for a request slot of the pool.
//
// Held by a ProbeSet (the supervisor's), which outlives the workers it probes for: the probe
// is retired from its socket's close callback, so it may close after its worker is gone. The
// worker hears the result once, unless it cancel()s first.
#pragma once

#include <uv.h>

#include <optional>
#include <string>

#include "common/net/buffer_pool.h"
#include "common/net/socket.h"
#include "common/owned_list.h"
#include "common/uv/loop.h"
#include "common/uv/timer.h"

namespace loopguard::offload {

// Where a worker listens: a unix socket path or a loopback port.
struct WorkerAddress {
  bool is_unix = true;
  std::string path;   // is_unix
  uint16_t port = 0;  // !is_unix (127.0.0.1)
  std::string describe() const { return is_unix ? "unix:" + path : "127.0.0.1:" + std::to_string(port); }
};

class ProbeOwner {
 public:
  virtual ~ProbeOwner() = default;
  // ready: the worker answered (connect, or a status below 500). `detail` says what happened.
  virtual void onProbeResult(bool ready, const std::string& detail) = 0;
};

class Probe;
using ProbeSet = OwnedList<Probe>;

class Probe final : public ListNode<Probe>, private net::SocketEvents {
 public:
  // Starts a probe held by `set`; the result comes later (never from inside this call).
  static Probe& start(ProbeSet& set, uv_loop_t* loop, net::BufferPool& buffers,
                      const WorkerAddress& address, const std::optional<std::string>& path,
                      uint64_t timeout_ms, ProbeOwner& owner);
  // No result will be delivered; the probe closes (and its set retires it).
  void cancel();

  // For ProbeSet::emplace() only (start() is how a probe is made).
  Probe(ProbeSet& set, uv_loop_t* loop, net::BufferPool& buffers, ProbeOwner& owner);
  ~Probe() override = default;

 private:
  void onSocketRead() override;
  void onSocketEof(int status) override;
  void onSocketWritten(int status) override;
  void onSocketConnected(int status) override;
  void onSocketClosed() override;
  void onTimeout();
  void onConnectError();  // from the ready queue: a connect that failed inside start()
  void judge();  // status line seen: ready if below 500
  void done(bool ready, std::string detail);

  ProbeSet& set_;
  uv_loop_t* loop_;
  ProbeOwner* owner_;
  net::Socket socket_;
  uv::Timer timer_;
  uv::ReadyCall connect_error_{this, &uv::bindMethod<Probe, &Probe::onConnectError>};
  std::string request_;  // owned until the write completes
  std::optional<std::string> path_;
  int status_ = -1;  // from the status line, once seen
  bool finished_ = false;
  std::string connect_error_detail_;
};

}  // namespace loopguard::offload
