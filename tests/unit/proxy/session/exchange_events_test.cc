// A relayed request's events reach an observer registered on the proxy, in order: the proxy,
// a stand-in app (a LoopbackServer that answers) and a client on one private loop, all on
// 127.0.0.1 (nothing leaves loopback).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/logging.h"
#include "common/uv/handle.h"
#include "config/loader.h"
#include "proxy/proxy_server.h"
#include "tests/unit/support/loop_runner.h"
#include "tests/unit/support/loopback_server.h"

namespace loopguard::proxy {
namespace {

using loopguard::testing::runUntil;

// Remembers each event with what the record says at that moment.
class EventLog final : public ExchangeObserver {
 public:
  void onUpstreamAttached(ExchangeRecord& r, upstream::Lease&) override {
    events.push_back("attached target=" + r.target_name);
  }
  void onRequestSent(ExchangeRecord& r, upstream::Lease&) override {
    events.push_back(std::string("sent stamped=") + (r.upstream_sent_us != 0 ? "yes" : "no"));
  }
  void onAttemptEnded(ExchangeRecord&, routing::SampleOutcome outcome) override {
    events.push_back(outcome == routing::SampleOutcome::Ok ? "attempt ok" : "attempt drop");
  }
  void onResponseHead(ExchangeRecord&, bool streamed) override {
    events.push_back(streamed ? "head streamed" : "head");
  }
  void onFinished(ExchangeRecord& r) override {
    events.push_back("finished " + r.method + " " + std::to_string(r.status) +
                     " route=" + (r.route != nullptr ? r.route->route->name : "-"));
  }
  std::vector<std::string> events;
};

// The client: one request, then everything until the proxy closes the connection.
class Client {
 public:
  Client(uv_loop_t* loop, const std::string& host_port, std::string request)
      : request_(std::move(request)) {
    uv_tcp_init(loop, tcp_.get());
    tcp_.markInitialized();
    tcp_.get()->data = this;
    connect_.data = this;
    std::string host = host_port.substr(0, host_port.rfind(':'));
    int port = std::stoi(host_port.substr(host_port.rfind(':') + 1));
    sockaddr_in addr{};
    uv_ip4_addr(host.c_str(), port, &addr);
    uv_tcp_connect(&connect_, tcp_.get(), reinterpret_cast<const sockaddr*>(&addr),
                   [](uv_connect_t* c, int status) {
                     auto* self = static_cast<Client*>(c->data);
                     if (status != 0) {
                       self->done = true;
                       return;
                     }
                     self->send();
                   });
  }
  std::string received;
  bool done = false;
  void close() { tcp_.close(); }

 private:
  void send() {
    uv_buf_t out = uv_buf_init(request_.data(), static_cast<unsigned>(request_.size()));
    uv_write(&write_, tcp_.stream(), &out, 1, nullptr);
    uv_read_start(
        tcp_.stream(),
        [](uv_handle_t* h, size_t, uv_buf_t* b) {
          auto* self = static_cast<Client*>(h->data);
          *b = uv_buf_init(self->buf_, sizeof(self->buf_));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* self = static_cast<Client*>(s->data);
          if (n < 0) {
            self->done = true;
            uv_read_stop(s);
            return;
          }
          self->received.append(b->base, static_cast<size_t>(n));
        });
  }
  std::string request_;
  uv::Handle<uv_tcp_t> tcp_;
  uv_connect_t connect_{};
  uv_write_t write_{};
  char buf_[4096];
};

std::shared_ptr<const config::Config> configFor(int app_port) {
  std::string yaml =
      "listen: \"127.0.0.1:0\"\nadvice: {enabled: false}\n"
      "upstreams: {app: {endpoints: [\"127.0.0.1:" +
      std::to_string(app_port) +
      "\"]}}\n"
      "routes: [{name: api, match: {prefix: /}, upstream: app}]\n";
  config::LoadResult r = config::loadConfigString(yaml, "t.yaml", config::Purpose::Proxy);
  EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors[0].format());
  return r.config;
}

TEST(RelayEvents, ARelayedRequestsEventsArriveInOrder) {
  setupLogging("warn", LogFormatKind::Text);
  uv::Loop loop;
  testing::LoopbackServer app(loop.get(), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  std::shared_ptr<const config::Config> cfg = configFor(app.port());
  ASSERT_TRUE(cfg);
  EventLog log;
  bool drained = false;
  {
    ProxyServer server(loop.get(), cfg);
    server.configureAccessLog(false, AccessLogFormat::Text);
    server.addExchangeObserver(log);
    server.applyConfig(cfg);  // the observer is in the snapshot from here on
    std::string error;
    ASSERT_TRUE(server.start(*cfg->listen, error)) << error;
    Client client(loop.get(), server.boundAddress(),
                  "GET /items/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ASSERT_TRUE(runUntil(loop, [&] { return client.done; }));
    EXPECT_NE(client.received.find("HTTP/1.1 200"), std::string::npos) << client.received;
    std::vector<std::string> want = {"attached target=127.0.0.1:" + std::to_string(app.port()),
                                     "sent stamped=yes", "attempt ok", "head",
                                     "finished GET 200 route=api"};
    EXPECT_EQ(log.events, want);
    client.close();
    app.close();
    server.drain([&] { drained = true; });
    ASSERT_TRUE(runUntil(loop, [&] { return drained; }));
    // The upstream connections close from the loop, and count themselves out as they go.
    ASSERT_TRUE(
        runUntil(loop, [&] { return server.upstreamCounters().at("app").open_connections == 0; }));
  }
  uv_run(loop.get(), UV_RUN_DEFAULT);  // the close callbacks of what the server owned
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace loopguard::proxy
