// One readiness check of a starting worker over its own socket: a connect, then (with
// ready.path) an HTTP GET whose status must be below 500. A minimal client on purpose: it only
// needs the status line, and it must never be mistaken for a request slot of the pool.
//
// Heap-allocated; deletes itself once its socket is closed. The owner hears the result once,
// unless it cancel()s first.
#pragma once

#include <uv.h>

#include <optional>
#include <string>

#include "common/net/buffer_pool.h"
#include "common/net/socket.h"
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

class Probe final : private net::SocketEvents {
 public:
  // Starts a probe; the result comes later (never from inside this call).
  static Probe* start(uv_loop_t* loop, net::BufferPool& buffers, const WorkerAddress& address,
                      const std::optional<std::string>& path, uint64_t timeout_ms,
                      ProbeOwner& owner);
  // No result will be delivered; the probe closes itself.
  void cancel();

 private:
  Probe(uv_loop_t* loop, net::BufferPool& buffers, ProbeOwner& owner);
  ~Probe() = default;
  void onSocketRead() override;
  void onSocketEof(int status) override;
  void onSocketWritten(int status) override;
  void onSocketConnected(int status) override;
  void onTimeout();
  void onConnectError();  // from the ready queue: a connect that failed inside start()
  void judge();  // status line seen: ready if below 500
  void done(bool ready, std::string detail);
  static void onClosed(void* self);

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
