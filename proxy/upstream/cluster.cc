#include "proxy/upstream/cluster.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace loopguard::upstream {

namespace {

bool literalAddress(const config::Address& a, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof(out));
  if (uv_ip4_addr(a.host.c_str(), a.port, reinterpret_cast<sockaddr_in*>(&out)) == 0) return true;
  if (uv_ip6_addr(a.host.c_str(), a.port, reinterpret_cast<sockaddr_in6*>(&out)) == 0) return true;
  return false;
}

std::string addressName(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = {0};
  int port = 0;
  if (addr.ss_family == AF_INET6) {
    auto* a6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    uv_ip6_name(a6, host, sizeof(host));
    port = ntohs(a6->sin6_port);
    // Appended, not `"[" + std::string(host)`: GCC 12 at -O3 reports a false -Wrestrict there.
    std::string out("[");
    out.append(host).append("]:").append(std::to_string(port));
    return out;
  }
  auto* a4 = reinterpret_cast<const sockaddr_in*>(&addr);
  uv_ip4_name(a4, host, sizeof(host));
  port = ntohs(a4->sin_port);
  return std::string(host) + ":" + std::to_string(port);
}

}  // namespace

// One uv_getaddrinfo in flight. Heap-owned because the cluster may go away first; then
// `cluster` is nulled and the callback only frees it.
struct Cluster::DnsQuery {
  uv_getaddrinfo_t req{};
  Cluster* cluster = nullptr;
  std::string source;
  uint16_t port = 0;
};

Cluster::Cluster(uv_loop_t* loop, net::BufferPool& buffers, const config::Upstream& config,
                 UpstreamCounters& counters)
    : loop_(loop),
      buffers_(buffers),
      config_(config),
      counters_(counters),
      resolve_timer_(loop, this, &uv::bindTimer<Cluster, &Cluster::onResolveTimer>) {
  for (const config::Address& a : config_.endpoints) {
    auto e = std::make_unique<Endpoint>();
    e->source = a.toString();
    if (a.kind == config::Address::Kind::Unix) {
      e->is_unix = true;
      e->unix_path = a.path;
      e->name = "unix:" + a.path;
      endpoints_.push_back(std::move(e));
    } else if (literalAddress(a, e->addr)) {
      e->name = addressName(e->addr);
      endpoints_.push_back(std::move(e));
    } else {
      has_dns_names_ = true;
    }
  }
  if (has_dns_names_) {
    resolveAll();
    resolve_timer_.start(config_.resolve_every.count(), config_.resolve_every.count());
    resolve_timer_.unref();
  }
}

Cluster::~Cluster() {
  for (DnsQuery* q : dns_queries_) {
    q->cluster = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&q->req));
  }
}

void Cluster::shutdown() {
  shut_down_ = true;
  resolve_timer_.stop();
  auto waiters = std::move(dns_waiters_);
  dns_waiters_.clear();
  for (auto& e : endpoints_) {
    while (UpstreamConnection* c = popIdle(*e)) c->close();
    for (const Attempt& attempt : e->queued) waiters.emplace_back(attempt.waiter, AcquireOptions{});
    e->queued.clear();
  }
  for (auto& [waiter, options] : waiters) {
    if (waiter) waiter->onTargetFailed(UpstreamErrorKind::Connect, "upstream shutting down");
  }
}

bool Cluster::drained() const {
  for (const auto& e : endpoints_) {
    if (e->open > 0) return false;
  }
  return true;
}

size_t Cluster::load(const Endpoint& e) {
  return e.active + e.connecting + e.queued.size();
}

Endpoint* Cluster::pick() {
  Endpoint* best = nullptr;
  size_t n = endpoints_.size();
  if (n == 0) return nullptr;
  size_t start = rr_next_++ % n;
  for (size_t k = 0; k < n; ++k) {
    Endpoint* e = endpoints_[(start + k) % n].get();
    if (e->retired) continue;
    if (config_.balance == config::Balance::RoundRobin) return e;
    // least_request; the rotating start spreads ties. Requests still waiting for a connection
    // count too: an endpoint slow to accept must not look idle and attract more of them.
    if (best == nullptr || load(*e) < load(*best)) best = e;
  }
  return best;
}

AcquireResult Cluster::acquire(TargetWaiter& waiter, const AcquireOptions& options) {
  if (shut_down_) return AcquireResult::failed("upstream shutting down");
  Endpoint* e = pick();
  if (e == nullptr) {
    if (has_dns_names_ && !dns_queries_.empty()) {
      dns_waiters_.emplace_back(&waiter, options);
      return AcquireResult::pending();
    }
    return AcquireResult::failed("no resolved endpoints");
  }
  if (!options.fresh) {
    if (UpstreamConnection* c = popIdle(*e)) {
      ++e->active;
      return AcquireResult::ready(c);
    }
  }
  Attempt attempt;
  attempt.waiter = &waiter;
  attempt.fresh = options.fresh;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i].get() == e) attempt.endpoint_index = i;
  }
  if (!options.fresh && e->connecting >= maxConnecting()) {
    // A burst wider than the idle pool would otherwise open (and then close) a connection per
    // request; connections free up faster than handshakes complete, so waiting for one is
    // cheaper. Measured with 1,000 clients and a pool of 64: 0.84 -> 0.16 connects per
    // request, 2.3x the requests/s (tests/bench/proxy_overhead.sh, README).
    e->queued.push_back(attempt);
    return AcquireResult::pending();
  }
  if (startConnect(*e, attempt)) return AcquireResult::pending();
  ++attempt.tries;
  if (connectNext(attempt)) return AcquireResult::pending();
  return AcquireResult::failed("connect failed");
}

bool Cluster::startConnect(Endpoint& e, Attempt attempt) {
  auto* c = new UpstreamConnection(loop_, buffers_, *this, e.name);
  c->ownerTag = &e;
  ++e.open;
  ++counters_.open_connections;
  ++attempt.tries;
  uint64_t timeout = static_cast<uint64_t>(config_.connect_timeout.count());
  int rc = e.is_unix ? c->connectUnix(e.unix_path, timeout)
                     : c->connectTcp(reinterpret_cast<const sockaddr*>(&e.addr), timeout);
  if (rc != 0) {
    ++counters_.errors_connect;
    c->close();  // onConnectionGone fixes the counts
    return false;
  }
  connecting_[c] = attempt;
  ++e.connecting;
  if (attempt.waiter != nullptr && !attempt.fresh) {
    e.waiting.push_back(c);
    // Stale entries are dropped as they reach the front; bound the rest here.
    if (e.waiting.size() > 2 * connecting_.size() + 64) {
      std::erase_if(e.waiting, [&](UpstreamConnection* w) {
        auto it = connecting_.find(w);
        return it == connecting_.end() || it->second.waiter == nullptr;
      });
    }
  }
  return true;
}

uint32_t Cluster::maxConnecting() const {
  return std::max<uint32_t>(64, config_.max_idle_connections);
}

TargetWaiter* Cluster::nextWaiter(Endpoint& e) {
  while (!e.queued.empty()) {
    TargetWaiter* waiter = e.queued.front().waiter;
    e.queued.pop_front();
    if (waiter != nullptr) return waiter;
  }
  while (!e.waiting.empty()) {
    UpstreamConnection* pending = e.waiting.front();
    e.waiting.pop_front();
    auto it = connecting_.find(pending);
    if (it == connecting_.end() || pending->ownerTag != &e) continue;
    Attempt& attempt = it->second;
    if (attempt.waiter == nullptr || attempt.fresh) continue;
    return std::exchange(attempt.waiter, nullptr);
  }
  return nullptr;
}

void Cluster::connectQueued(Endpoint& e) {
  while (e.connecting < maxConnecting() && !e.queued.empty() && !shut_down_) {
    Attempt attempt = e.queued.front();
    e.queued.pop_front();
    if (attempt.waiter == nullptr) continue;
    if (!e.retired && startConnect(e, attempt)) continue;
    ++attempt.tries;
    connectNextOrFail(attempt, UpstreamErrorKind::Connect, "connect failed");
  }
}

void Cluster::failOverQueued(Endpoint& e, const char* why) {
  std::deque<Attempt> queued = std::move(e.queued);
  e.queued.clear();
  for (Attempt& attempt : queued) {
    ++attempt.tries;  // this endpoint counts as tried
    connectNextOrFail(attempt, UpstreamErrorKind::Connect, why);
  }
}

void Cluster::reuseOrPark(Endpoint& e, UpstreamConnection* c, bool reused) {
  if (TargetWaiter* waiter = nextWaiter(e)) {
    ++e.active;
    waiter->onTargetReady(c, reused);
    return;
  }
  if (!shut_down_ && !e.retired && e.idle_count < config_.max_idle_connections) {
    c->becomeIdle(static_cast<uint64_t>(config_.idle_timeout.count()));
    pushIdle(e, c);
    return;
  }
  c->close();
}

bool Cluster::connectNext(Attempt attempt) {
  size_t n = endpoints_.size();
  while (attempt.tries < n) {
    attempt.endpoint_index = (attempt.endpoint_index + 1) % n;
    Endpoint& next = *endpoints_[attempt.endpoint_index];
    if (!next.retired && startConnect(next, attempt)) return true;
    ++attempt.tries;
  }
  return false;
}

void Cluster::connectNextOrFail(Attempt attempt, UpstreamErrorKind kind, const char* why) {
  if (attempt.waiter == nullptr) return;  // cancelled
  if (!connectNext(attempt)) attempt.waiter->onTargetFailed(kind, why);
}

void Cluster::recordError(UpstreamErrorKind kind) {
  switch (kind) {
    case UpstreamErrorKind::Connect: ++counters_.errors_connect; return;
    case UpstreamErrorKind::Reset: ++counters_.errors_reset; return;
    case UpstreamErrorKind::Timeout: ++counters_.errors_timeout; return;
  }
}

void Cluster::cancel(TargetWaiter& waiter) {
  for (auto& [conn, attempt] : connecting_) {
    if (attempt.waiter == &waiter) attempt.waiter = nullptr;
  }
  for (auto& entry : dns_waiters_) {
    if (entry.first == &waiter) entry.first = nullptr;
  }
  for (auto& e : endpoints_) {
    for (Attempt& attempt : e->queued) {
      if (attempt.waiter == &waiter) attempt.waiter = nullptr;
    }
  }
}

void Cluster::onConnectResult(UpstreamConnection* c, int status) {
  auto it = connecting_.find(c);
  if (it == connecting_.end()) return;
  Attempt attempt = it->second;
  connecting_.erase(it);
  auto& e = *static_cast<Endpoint*>(c->ownerTag);
  --e.connecting;
  if (status != 0) {
    ++counters_.errors_connect;
    spdlog::get("upstream")->warn("upstream {}: connect to {} failed: {}", config_.name, e.name,
                                  status == UV_ETIMEDOUT ? "timed out" : uv_strerror(status));
    c->close();
    const char* why = status == UV_ETIMEDOUT ? "connect timed out" : "connect failed";
    connectNextOrFail(attempt, UpstreamErrorKind::Connect, why);
    // A timeout says the endpoint is unreachable: the queue behind it would otherwise wait
    // out one timeout per round of handshakes. A fast failure (refused) is retried per request.
    if (status == UV_ETIMEDOUT) {
      failOverQueued(e, why);
    } else {
      connectQueued(e);
    }
    return;
  }
  if (shut_down_) {
    c->close();
    return;
  }
  if (attempt.waiter == nullptr) {
    // Its request was cancelled or served by a connection that freed up first.
    reuseOrPark(e, c, false);
  } else {
    ++e.active;
    attempt.waiter->onTargetReady(c, false);
  }
  connectQueued(e);
}

void Cluster::release(UpstreamConnection* c, bool reusable) {
  auto& e = *static_cast<Endpoint*>(c->ownerTag);
  if (c->state() == UpstreamConnection::State::Active ||
      c->state() == UpstreamConnection::State::Tunnel) {
    if (e.active > 0) --e.active;
  }
  if (reusable && !shut_down_ && !e.retired && c->state() != UpstreamConnection::State::Closing) {
    c->detach();
    reuseOrPark(e, c, true);
    return;
  }
  c->close();
}

UpstreamConnection* Cluster::popIdle(Endpoint& e) {
  UpstreamConnection* c = e.idle_head;
  if (c == nullptr) return nullptr;
  removeIdle(e, c);
  return c;
}

void Cluster::pushIdle(Endpoint& e, UpstreamConnection* c) {
  // LIFO: the most recently used connection is the least likely to have been closed by the app.
  c->idle_prev = nullptr;
  c->idle_next = e.idle_head;
  if (e.idle_head) e.idle_head->idle_prev = c;
  e.idle_head = c;
  ++e.idle_count;
}

void Cluster::removeIdle(Endpoint& e, UpstreamConnection* c) {
  if (c->idle_prev) c->idle_prev->idle_next = c->idle_next;
  if (c->idle_next) c->idle_next->idle_prev = c->idle_prev;
  if (e.idle_head == c) e.idle_head = c->idle_next;
  c->idle_prev = c->idle_next = nullptr;
  --e.idle_count;
}

void Cluster::onIdleClosed(UpstreamConnection* c) {
  removeIdle(*static_cast<Endpoint*>(c->ownerTag), c);
}

void Cluster::onConnectionGone(UpstreamConnection* c) {
  auto it = connecting_.find(c);
  auto* e = static_cast<Endpoint*>(c->ownerTag);
  if (it != connecting_.end()) {
    // Closed before the connect finished: treat it as a failed connect.
    Attempt attempt = it->second;
    connecting_.erase(it);
    --e->connecting;
    connectNextOrFail(attempt, UpstreamErrorKind::Connect, "connect failed");
    connectQueued(*e);
  }
  --e->open;
  --counters_.open_connections;
  if (e->retired && e->open == 0) {  // its queue went to the live endpoints when it retired
    endpoints_.erase(std::remove_if(endpoints_.begin(), endpoints_.end(),
                                    [&](const auto& p) { return p.get() == e; }),
                     endpoints_.end());
  }
}

void Cluster::resolveAll() {
  for (const config::Address& a : config_.endpoints) {
    if (a.kind != config::Address::Kind::Tcp) continue;
    sockaddr_storage tmp;
    if (literalAddress(a, tmp)) continue;
    auto* q = new DnsQuery;
    q->cluster = this;
    q->source = a.toString();
    q->port = a.port;
    q->req.data = q;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(
        loop_, &q->req,
        [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
          auto* query = static_cast<DnsQuery*>(req->data);
          Cluster* cluster = query->cluster;
          std::vector<sockaddr_storage> addrs;
          if (status == 0) {
            for (addrinfo* ai = res; ai; ai = ai->ai_next) {
              if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
              sockaddr_storage s{};
              std::memcpy(&s, ai->ai_addr, ai->ai_addrlen);
              if (s.ss_family == AF_INET) {
                reinterpret_cast<sockaddr_in*>(&s)->sin_port = htons(query->port);
              } else {
                reinterpret_cast<sockaddr_in6*>(&s)->sin6_port = htons(query->port);
              }
              addrs.push_back(s);
            }
          }
          uv_freeaddrinfo(res);
          if (cluster != nullptr) {
            auto& qs = cluster->dns_queries_;
            qs.erase(std::remove(qs.begin(), qs.end(), query), qs.end());
            if (status != 0) {
              spdlog::get("upstream")->warn("upstream {}: resolving {} failed: {}",
                                            cluster->config_.name, query->source,
                                            uv_strerror(status));
            }
            if (status == 0 || status != UV_ECANCELED) cluster->onResolved(query->source, addrs);
          }
          delete query;
        },
        a.host.c_str(), nullptr, &hints);
    if (rc == 0) {
      dns_queries_.push_back(q);
    } else {
      delete q;
    }
  }
}

void Cluster::onResolveTimer() {
  if (!shut_down_) resolveAll();
}

void Cluster::onResolved(const std::string& source, const std::vector<sockaddr_storage>& addrs) {
  if (addrs.empty()) {
    // Keep what we had: a failed lookup must not take every endpoint away.
    flushDnsWaiters();
    return;
  }
  std::vector<std::string> names;
  for (const auto& a : addrs) names.push_back(addressName(a));
  for (auto& e : endpoints_) {
    if (e->source != source || e->retired) continue;
    if (std::find(names.begin(), names.end(), e->name) == names.end()) {
      e->retired = true;
      while (UpstreamConnection* c = popIdle(*e)) c->close();
      // Its queued requests start over on the live endpoints (flushDnsWaiters, below).
      for (const Attempt& attempt : e->queued) {
        if (attempt.waiter != nullptr) dns_waiters_.emplace_back(attempt.waiter, AcquireOptions{});
      }
      e->queued.clear();
    }
  }
  for (size_t i = 0; i < addrs.size(); ++i) {
    bool known = std::any_of(endpoints_.begin(), endpoints_.end(), [&](const auto& e) {
      return !e->retired && e->source == source && e->name == names[i];
    });
    if (known) continue;
    auto e = std::make_unique<Endpoint>();
    e->source = source;
    e->addr = addrs[i];
    e->name = names[i];
    endpoints_.push_back(std::move(e));
  }
  // Retired endpoints with nothing open can go now.
  endpoints_.erase(std::remove_if(endpoints_.begin(), endpoints_.end(),
                                  [](const auto& e) { return e->retired && e->open == 0; }),
                   endpoints_.end());
  flushDnsWaiters();
}

void Cluster::flushDnsWaiters() {
  if (!dns_queries_.empty()) return;  // wait for every name before deciding
  auto waiters = std::move(dns_waiters_);
  dns_waiters_.clear();
  for (auto& [waiter, options] : waiters) {
    if (waiter == nullptr) continue;
    AcquireResult r = acquire(*waiter, options);
    if (r.kind == AcquireResult::Kind::Ready) waiter->onTargetReady(r.connection, true);
    if (r.kind == AcquireResult::Kind::Failed) {
      waiter->onTargetFailed(UpstreamErrorKind::Connect, r.why);
    }
  }
}

}  // namespace loopguard::upstream
