#include "offload/probe.h"

#include <arpa/inet.h>

#include <cstring>
#include <utility>

namespace loopguard::offload {

namespace {

// Reads "HTTP/1.x NNN" from the start of `line`; -1 if it is not a status line.
int parseStatusLine(std::string_view line) {
  if (!line.starts_with("HTTP/1.") || line.size() < 12 || line[8] != ' ') return -1;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return -1;
    status = status * 10 + (line[i] - '0');
  }
  return status;
}

constexpr size_t kMaxStatusLine = 4096;

}  // namespace

Probe::Probe(ProbeSet& set, uv_loop_t* loop, net::BufferPool& buffers, ProbeOwner& owner)
    : set_(set),
      loop_(loop),
      owner_(&owner),
      socket_(loop, buffers, *this),
      timer_(loop, this, &uv::bindTimer<Probe, &Probe::onTimeout>) {}

Probe& Probe::start(ProbeSet& set, uv_loop_t* loop, net::BufferPool& buffers,
                    const WorkerAddress& address, const std::optional<std::string>& path,
                    uint64_t timeout_ms, ProbeOwner& owner) {
  Probe* p = &set.emplace(set, loop, buffers, owner);
  p->path_ = path;
  int rc;
  if (address.is_unix) {
    rc = p->socket_.connectUnix(address.path);
  } else {
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", address.port, &addr);
    rc = p->socket_.connectTcp(reinterpret_cast<const sockaddr*>(&addr));
  }
  if (rc != 0) {
    // Never report from inside start(): the owner is still setting up.
    p->connect_error_detail_ = std::string("connect: ") + uv_strerror(rc);
    p->connect_error_.post(loop);
  } else {
    p->timer_.start(timeout_ms);
  }
  return *p;
}

void Probe::cancel() {
  owner_ = nullptr;
  if (!finished_) done(false, "cancelled");
}

void Probe::onSocketConnected(int status) {
  if (finished_) return;
  if (status != 0) {
    done(false, std::string("connect: ") + uv_strerror(status));
    return;
  }
  if (!path_) {
    done(true, "accepted a connection");
    return;
  }
  request_ = "GET " + *path_ +
             " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: loopguard-ready-probe\r\n"
             "Connection: close\r\n\r\n";
  uv_buf_t buf = uv_buf_init(request_.data(), static_cast<unsigned>(request_.size()));
  int rc = socket_.write(&buf, 1);
  if (rc != 0) {
    done(false, std::string("write: ") + uv_strerror(rc));
    return;
  }
  socket_.readStart();
}

void Probe::onSocketWritten(int status) {
  if (!finished_ && status < 0) done(false, std::string("write: ") + uv_strerror(status));
}

void Probe::onSocketRead() {
  if (finished_) return;
  std::string_view in = socket_.input();
  if (status_ < 0) {
    size_t eol = in.find("\r\n");
    if (eol == std::string_view::npos) {
      if (in.size() > kMaxStatusLine) done(false, "no status line");
      return;  // the socket reads on
    }
    status_ = parseStatusLine(in.substr(0, eol));
    if (status_ < 0) {
      done(false, "not an HTTP response");
      return;
    }
  }
  // Read the rest of the response (we asked for "Connection: close") and judge at the EOF:
  // closing first would make the app's write fail, and it would log that.
  socket_.consume(in.size());
}

void Probe::onSocketEof(int status) {
  if (finished_) return;
  if (status_ >= 0) {
    judge();
    return;
  }
  done(false, status == UV_EOF ? std::string("closed without a response")
                               : std::string("read: ") + uv_strerror(status));
}

void Probe::judge() {
  std::string detail = "GET " + *path_ + " answered " + std::to_string(status_);
  done(status_ < 500, std::move(detail));
}

void Probe::onConnectError() {
  if (!finished_) done(false, connect_error_detail_);
}

void Probe::onTimeout() {
  if (finished_) return;
  if (status_ >= 0) {
    judge();  // it answered but kept the connection open
  } else {
    done(false, "no answer in time");
  }
}

void Probe::done(bool ready, std::string detail) {
  finished_ = true;
  timer_.stop();
  connect_error_.cancel();
  ProbeOwner* owner = std::exchange(owner_, nullptr);
  // Close first: the owner may start the next probe from its callback. The set retires it
  // from the close callback, so `this` stays valid until we return.
  socket_.close();
  if (owner != nullptr) owner->onProbeResult(ready, detail);
}

void Probe::onSocketClosed() { set_.retire(loop_, *this); }

}  // namespace loopguard::offload
