#include "proxy/admin/admin_server.h"

#include <spdlog/spdlog.h>

#include "proxy/http/header_rules.h"
#include "proxy/http/message_parser.h"
#include "common/net/socket.h"
#include "common/uv/timer.h"

namespace loopguard::admin {

namespace {
constexpr size_t kMaxAdminConnections = 64;
constexpr uint64_t kAdminTimeoutMs = 10'000;
}  // namespace

// Held by its server's OwnedList from accept to its socket's close callback, which hands it
// back to the server to retire.
class AdminServer::Connection final : public ListNode<Connection>,
                                      private net::SocketEvents,
                                      private http::ParserEvents {
 public:
  explicit Connection(AdminServer& server)
      : server_(server),
        socket_(server.loop_, server.buffers_, *this),
        parser_(HTTP_REQUEST, *this, 16 * 1024),
        timer_(server.loop_, this, &uv::bindTimer<Connection, &Connection::onTimeout>) {}
  ~Connection() override = default;

  int accept(uv_stream_t* s) { return socket_.accept(s); }
  void start() {
    timer_.start(kAdminTimeoutMs);
    socket_.readStart();
  }
  void close() {
    if (socket_.closed()) return;
    timer_.stop();
    socket_.close();
  }


 private:
  void onSocketClosed() override { server_.onConnectionClosed(*this); }

  void onSocketRead() override {
    if (responded_) {
      socket_.consume(socket_.input().size());
      return;
    }
    std::string_view in = socket_.input();
    http::ParseResult r = parser_.execute(in.data(), in.size());
    socket_.consume(in.size());
    if (r.status == http::ParseStatus::Error || r.status == http::ParseStatus::HeadTooLarge) {
      respond({400, "text/plain; charset=utf-8", "bad request\n"});
    } else if (complete_) {
      AdminRequest req;
      req.method.assign(parser_.method());
      const std::string& target = parser_.target();
      size_t q = target.find('?');
      req.path = target.substr(0, q);
      if (q != std::string::npos) req.query = target.substr(q + 1);
      AdminPeer peer;
      std::string ip = socket_.peerIp();
      peer.local = server_.unix_listener_ || isLoopbackAddress(ip);
      peer.authorization = parser_.headers().get("authorization");
      AccessDecision decision = server_.policy_.check(req.path, peer);
      if (!decision.allowed()) {
        respond(refusal(req, ip, decision));
        return;
      }
      respond(server_.handler_(req));
    }
  }
  void onSocketEof(int) override { close(); }
  void onSocketWritten(int) override { close(); }

  int onHeadComplete() override { return 0; }
  void onBodyData(const char*, size_t) override {}  // no admin endpoint takes a body
  int onMessageComplete() override {
    complete_ = true;
    return http::kPauseParser;
  }

  static AdminResponse refusal(const AdminRequest& req, const std::string& ip,
                               const AccessDecision& decision) {
    spdlog::get("admin")->info("refused {} {} from {}: {} {}", req.method, req.path,
                               ip.empty() ? "?" : ip, decision.status, decision.why);
    std::string body = "{\"error\": \"";
    http::appendJsonEscaped(body, decision.why);
    body += "\", \"path\": \"";
    http::appendJsonEscaped(body, req.path);
    body += "\"}\n";
    AdminResponse r{decision.status, "application/json", std::move(body), {}};
    if (decision.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"loopguard admin\"");
    return r;
  }

  void respond(const AdminResponse& r) {
    responded_ = true;
    socket_.readStop();
    out_.clear();
    out_.append("HTTP/1.1 ");
    http::appendDecimal(out_, static_cast<uint64_t>(r.status));
    out_.append(" ");
    out_.append(http::reasonPhrase(r.status));
    out_.append("\r\nContent-Type: ");
    out_.append(r.content_type);
    for (const auto& [name, value] : r.headers) {
      out_.append("\r\n").append(name).append(": ").append(value);
    }
    out_.append("\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: ");
    http::appendDecimal(out_, r.body.size());
    out_.append("\r\n\r\n");
    out_.append(r.body);
    uv_buf_t buf = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    if (socket_.write(&buf, 1) != 0) close();
  }

  void onTimeout() { close(); }

  AdminServer& server_;
  net::Socket socket_;
  http::MessageParser parser_;
  uv::Timer timer_;
  std::string out_;
  bool complete_ = false;
  bool responded_ = false;
};

AdminServer::AdminServer(uv_loop_t* loop, AdminHandler handler)
    : loop_(loop),
      handler_(std::move(handler)),
      listener_(
          loop, [this](uv_stream_t* s) { acceptOne(s); },
          [this] { return connections_.size() < kMaxAdminConnections; }) {}

AdminServer::~AdminServer() { close(); }

bool AdminServer::start(const config::Address& address, std::string& error) {
  unix_listener_ = address.kind == config::Address::Kind::Unix;
  return listener_.listen(address, error) == 0;
}

void AdminServer::acceptOne(uv_stream_t* server) {
  Connection& c = connections_.emplace(*this);
  if (c.accept(server) != 0) {
    c.close();
    return;
  }
  c.start();
}

void AdminServer::onConnectionClosed(Connection& connection) {
  connections_.retire(loop_, connection);
  listener_.resume();
}

void AdminServer::close() {
  listener_.close();
  connections_.forEach([](Connection& c) { c.close(); });
}

}  // namespace loopguard::admin
