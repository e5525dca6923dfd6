#include "proxy/upstream/cluster.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "proxy/routing/route_limiter.h"

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

// One uv_getaddrinfo in flight. libuv's request owns it from the call to the callback (its
// unique_ptr is released into req.data, and the callback takes it back), because the cluster
// may go away first: then the query is in no list any more, and the callback only frees it.
struct Cluster::DnsQuery : ListNode<DnsQuery> {
  uv_getaddrinfo_t req{};
  Cluster* cluster = nullptr;  // valid while linked()
  std::string source;
  uint16_t port = 0;
};

Cluster::Endpoint::Endpoint(Cluster& c, std::string src, Destination destination)
    : cluster(c),
      source(std::move(src)),
      pool(std::make_unique<ConnectionPool>(c.loop_, c.buffers_, *this, std::move(destination),
                                            c.poolSettings())) {}

Cluster::Endpoint::~Endpoint() { ConnectionPool::retire(std::move(pool)); }

void Cluster::Endpoint::onConnectFailed(ConnectionPool&, TargetWaiter* charged, int status) {
  cluster.onConnectFailed(*this, charged, status);
}

void Cluster::Endpoint::onConnectionClosed(ConnectionPool&, UpstreamConnection&, bool) {
  cluster.removeIfDone(*this);
}

Cluster::Cluster(uv_loop_t* loop, net::BufferPool& buffers, const config::Upstream& config,
                 UpstreamCounters& counters)
    : loop_(loop),
      buffers_(buffers),
      config_(config),
      counters_(counters),
      resolve_timer_(loop, this, &uv::bindMethod<Cluster, &Cluster::onResolveTimer>) {
  for (const config::Address& a : config_.endpoints) {
    Destination d;
    if (a.kind == config::Address::Kind::Unix) {
      d.is_unix = true;
      d.unix_path = a.path;
      d.name = "unix:" + a.path;
    } else if (literalAddress(a, d.addr)) {
      d.name = addressName(d.addr);
    } else {
      has_dns_names_ = true;
      continue;
    }
    endpoints_.push_back(std::make_unique<Endpoint>(*this, a.toString(), std::move(d)));
  }
  if (has_dns_names_) {
    resolveAll();
    resolve_timer_.start(config_.resolve_every.count(), config_.resolve_every.count());
    resolve_timer_.unref();
  }
}

Cluster::~Cluster() {
  // The list's destruction, next, unlinks (orphans) every query.
  dns_queries_.forEach([](DnsQuery& q) { uv_cancel(reinterpret_cast<uv_req_t*>(&q.req)); });
}

PoolSettings Cluster::poolSettings() {
  PoolSettings s;
  s.max_idle = config_.max_idle_connections;
  s.idle_timeout_ms = static_cast<uint64_t>(config_.idle_timeout.count());
  s.connect_timeout_ms = static_cast<uint64_t>(config_.connect_timeout.count());
  // A burst wider than the idle pool would otherwise open (and then close) a connection per
  // request; connections free up faster than handshakes complete, so waiting for one is
  // cheaper. Measured with 1,000 clients and a pool of 64: 0.84 -> 0.16 connects per request,
  // 2.3x the requests/s (tests/bench/proxy_overhead.sh, README).
  s.max_connecting = std::max<uint32_t>(64, config_.max_idle_connections);
  s.open_gauge = &counters_.open_connections;
  return s;
}

void Cluster::addWaitingLimiter(const std::shared_ptr<routing::RouteLimiter>& limiter) {
  std::erase_if(limiters_, [](const auto& weak) { return weak.expired(); });
  for (const auto& weak : limiters_) {
    if (weak.lock() == limiter) return;
  }
  limiters_.push_back(limiter);
}

bool Cluster::hasCapacity() const {
  // A cluster that is shut down keeps nobody waiting: acquire() fails at once.
  if (shut_down_ || !has_dns_names_) return true;
  return std::any_of(endpoints_.begin(), endpoints_.end(),
                     [](const auto& e) { return !e->retired; });
}

const char* Cluster::queueHoldReason() const {
  if (hasCapacity()) return nullptr;
  return looked_up_
             ? "timed out waiting in the route queue: the upstream has no endpoints (its DNS "
               "names resolve to no address)"
             : "timed out waiting in the route queue: the upstream's DNS names are still being "
               "resolved";
}

void Cluster::giveBack() {
  // Nothing to repay, but an adaptive limit that has this gate inside delegates the pumping of
  // its routes to it (as it does to a pool's).
  pumpWaiting();
}

void Cluster::pumpWaiting() {
  if (!hasCapacity()) return;
  // By index, each limiter held while it pumps: an admission that fails at once may drop the
  // last snapshot that held it. Only a reload adds to the list, never an admission.
  for (size_t i = 0; i < limiters_.size(); ++i) {
    if (std::shared_ptr<routing::RouteLimiter> limiter = limiters_[i].lock()) {
      limiter->limiter().pump();
    }
  }
}

void Cluster::shutdown() {
  shut_down_ = true;
  resolve_timer_.stop();
  while (TargetWaiter* waiter = dns_waiters_.popFront()) {
    waiter->deliverFailure(loop_, UpstreamErrorKind::Connect, "upstream shutting down");
  }
  for (auto& e : endpoints_) e->pool->shutdown("upstream shutting down");
}

std::vector<EndpointReport> Cluster::endpointReports() const {
  std::vector<EndpointReport> out;
  out.reserve(endpoints_.size());
  for (const auto& e : endpoints_) {
    const ConnectionPool& p = *e->pool;
    out.push_back({e->name(), p.inUse(), static_cast<uint32_t>(p.waiting()), p.open(), p.idle(),
                   e->retired});
  }
  return out;
}

Cluster::Endpoint* Cluster::pick() {
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
    if (best == nullptr || e->pool->load() < best->pool->load()) best = e;
  }
  return best;
}

AcquireResult Cluster::acquire(TargetWaiter& waiter, const AcquireOptions& options) {
  if (shut_down_) return AcquireResult::failed("upstream shutting down");
  waiter.options = options;
  waiter.tries = 0;
  Endpoint* e = pick();
  if (e == nullptr) {
    if (has_dns_names_ && !dns_queries_.empty()) {
      dns_waiters_.pushBack(waiter);
      return AcquireResult::pending();
    }
    return AcquireResult::failed("no resolved endpoints");
  }
  if (!options.fresh) {
    if (UpstreamConnection* c = e->pool->takeIdle()) return AcquireResult::ready(c);
  }
  e->pool->request(waiter);
  return AcquireResult::pending();
}

void Cluster::release(Lease* lease, bool reusable) {
  UpstreamConnection& connection = UpstreamConnection::of(*lease);
  ConnectionPool::of(connection).release(&connection, reusable);
}

void Cluster::recordError(UpstreamErrorKind kind) {
  switch (kind) {
    case UpstreamErrorKind::Connect: ++counters_.errors_connect; return;
    case UpstreamErrorKind::Reset: ++counters_.errors_reset; return;
    case UpstreamErrorKind::Timeout: ++counters_.errors_timeout; return;
  }
}

void Cluster::onConnectFailed(Endpoint& e, TargetWaiter* charged, int status) {
  const char* why = status == UV_ETIMEDOUT ? "connect timed out" : "connect failed";
  if (status != UV_ECANCELED) {  // not closed by us (a retired endpoint)
    ++counters_.errors_connect;
    spdlog::get("upstream")->warn("upstream {}: connect to {} failed: {}", config_.name, e.name(),
                                  status == UV_ETIMEDOUT ? "timed out" : uv_strerror(status));
  }
  if (charged != nullptr) failOver(e, *charged, why);
  // A timeout says the endpoint is unreachable: the queue behind it would otherwise wait out one
  // timeout per round of handshakes. A fast failure (refused) is retried per request.
  if (status == UV_ETIMEDOUT) {
    while (TargetWaiter* waiter = e.pool->popWaiter()) failOver(e, *waiter, why);
  }
}

void Cluster::failOver(Endpoint& from, TargetWaiter& waiter, const char* why) {
  ++waiter.tries;  // `from` counts as tried
  size_t n = endpoints_.size();
  size_t i = 0;
  while (i < n && endpoints_[i].get() != &from) ++i;
  while (waiter.tries < n) {
    i = (i + 1) % n;
    Endpoint& next = *endpoints_[i];
    if (!next.retired) {
      next.pool->request(waiter);
      return;
    }
    ++waiter.tries;
  }
  waiter.deliverFailure(loop_, UpstreamErrorKind::Connect, why);
}

void Cluster::removeIfDone(Endpoint& e) {
  if (!e.retired || e.pool->open() > 0) return;
  // Called from inside its pool: the endpoint goes at the end of the loop turn.
  auto it = std::find_if(endpoints_.begin(), endpoints_.end(),
                         [&](const auto& p) { return p.get() == &e; });
  if (it == endpoints_.end()) return;
  uv::Loop::of(loop_).deferDelete(std::move(*it));
  endpoints_.erase(it);
}

void Cluster::resolveAll() {
  for (const config::Address& a : config_.endpoints) {
    if (a.kind != config::Address::Kind::Tcp) continue;
    sockaddr_storage tmp;
    if (literalAddress(a, tmp)) continue;
    auto q = std::make_unique<DnsQuery>();
    q->cluster = this;
    q->source = a.toString();
    q->port = a.port;
    q->req.data = q.get();
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(
        loop_, &q->req,
        [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
          std::unique_ptr<DnsQuery> query(static_cast<DnsQuery*>(req->data));
          Cluster* cluster = query->linked() ? query->cluster : nullptr;
          query->unlink();
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
            // No such name, or no address for it: what a headless Service with no ready pod
            // answers. Anything else (no DNS server, SERVFAIL) says nothing about the pods.
            bool none = status == UV_EAI_NONAME || status == UV_EAI_NODATA;
            if (status != 0 && !none) {
              spdlog::get("upstream")->warn("upstream {}: resolving {} failed: {}",
                                            cluster->config_.name, query->source,
                                            uv_strerror(status));
            }
            if (status != UV_ECANCELED) cluster->onResolved(query->source, addrs, none);
          }
        },
        a.host.c_str(), nullptr, &hints);
    if (rc == 0) dns_queries_.pushBack(*q.release());  // the request holds it now
  }
}

void Cluster::onResolveTimer() {
  if (!shut_down_) resolveAll();
}

void Cluster::onResolved(const std::string& source, const std::vector<sockaddr_storage>& addrs,
                         bool none) {
  if (shut_down_) return;
  looked_up_ = true;
  if (addrs.empty() && !none) {
    // Keep what we had: a failed lookup must not take every endpoint away.
    flushDnsWaiters();
    return;
  }
  std::vector<std::string> names;
  for (const auto& a : addrs) names.push_back(addressName(a));
  for (auto& e : endpoints_) {
    if (e->source != source || e->retired) continue;
    if (std::find(names.begin(), names.end(), e->name()) == names.end()) {
      // Its requests start over on the live endpoints (flushDnsWaiters, below); those in
      // flight finish, and its connections close as they end.
      e->retired = true;
      e->pool->evict(dns_waiters_);
      e->pool->shutdown("endpoint no longer resolved");
    }
  }
  for (size_t i = 0; i < addrs.size(); ++i) {
    bool known = std::any_of(endpoints_.begin(), endpoints_.end(), [&](const auto& e) {
      return !e->retired && e->source == source && e->name() == names[i];
    });
    if (known) continue;
    Destination d;
    d.addr = addrs[i];
    d.name = names[i];
    endpoints_.push_back(std::make_unique<Endpoint>(*this, source, std::move(d)));
  }
  // Retired endpoints with nothing open can go now.
  for (size_t i = endpoints_.size(); i-- > 0;) removeIfDone(*endpoints_[i]);
  // Once per change, not at every resolve_every while a Deployment is scaled to zero.
  bool live = hasCapacity();
  if (!live && reported_live_ != false) {
    spdlog::get("upstream")->warn(
        "upstream {}: {} resolves to no address: requests wait in their routes' queues "
        "(max_queue, queue_timeout) until it does",
        config_.name, source);
  } else if (live && reported_live_ == false) {
    spdlog::get("upstream")->info("upstream {}: {} resolves again: queued requests go",
                                  config_.name, source);
  }
  reported_live_ = live;
  flushDnsWaiters();
  pumpWaiting();
}

void Cluster::flushDnsWaiters() {
  if (!dns_queries_.empty()) return;  // wait for every name before deciding
  while (TargetWaiter* waiter = dns_waiters_.popFront()) {
    Endpoint* e = pick();
    if (e == nullptr) {
      waiter->deliverFailure(loop_, UpstreamErrorKind::Connect, "no resolved endpoints");
      continue;
    }
    waiter->tries = 0;
    e->pool->request(*waiter);
  }
}

}  // namespace loopguard::upstream
