"""Upstream endpoints given by DNS name: resolved with uv_getaddrinfo at start and again every
`resolve_every`, requests keep flowing across re-resolutions.

A name that resolves to no address (a scale-out pool's headless Service while its Deployment has
no ready pod: NXDOMAIN) leaves the upstream without endpoints: requests then wait in the route's
queue within max_queue and queue_timeout, go as soon as the name resolves, and are refused with
503 queue_timeout (Retry-After, X-Loopguard-Overload) if it does not in time. Endpoints that
exist but refuse connections still get 502 at once.

The names are served by nss_wrapper (Debian's libnss-wrapper, cwrap): preloaded into the proxy,
it answers getaddrinfo from a hosts file the test rewrites, so a name can appear and disappear
while the real resolver code path (uv_getaddrinfo on libuv's thread pool) runs unchanged."""
import glob
import os
import socket
import threading
import time

import pytest

from harness import (DeadPort, assert_overload, http_request, metric, proxy_config, wait_until)

NAME = "pool.loopguard.test"
NSS_WRAPPER = next(iter(glob.glob("/usr/lib/*/libnss_wrapper.so")), None)


class FakeDns:
    """A hosts file for nss_wrapper. Replaced atomically (a new inode, a new mtime), which is
    what makes nss_wrapper read it again at the next lookup."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "hosts")
        self.version = 0
        self.set()

    def set(self, *addresses):
        self.version += 1
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(f"{a} {NAME}\n" for a in addresses)
        os.utime(tmp, (1_000_000_000 + self.version,) * 2)
        os.replace(tmp, self.path)

    def env(self):
        # Under ASan: the sanitizer runtime must come first in the library list (a preload
        # ahead of it is fine for this library, which interposes only the NSS calls), and
        # nss_wrapper must not dlopen libc with RTLD_DEEPBIND, which the runtime refuses.
        env = {"LD_PRELOAD": NSS_WRAPPER, "NSS_WRAPPER_HOSTS": self.path,
               "NSS_WRAPPER_DISABLE_DEEPBIND": "1"}
        asan = os.environ.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"
        return env


@pytest.fixture
def dns(procs):
    if NSS_WRAPPER is None:
        pytest.skip("libnss-wrapper is not installed (deploy/install-deps.sh installs it)")
    return FakeDns(procs.path("dns"))


def scale_out_proxy(procs, dns, port, limits):
    config = proxy_config(
        {"pool": {"endpoints": [f"{NAME}:{port}"], "resolve_every": "100ms",
                  "connect_timeout": "2s"}},
        [{"name": "cpu", "match": {"prefix": "/"}, "upstream": "pool", "limits": limits}],
        admin={"listen": "127.0.0.1:0"})
    return procs.proxy(config, env=dns.env())


def proxy_with_no_endpoints(procs, dns, limits):
    """A proxy whose upstream name resolves to nothing yet (the proxy has said so)."""
    up = procs.upstream("pool")
    proxy = scale_out_proxy(procs, dns, up.port, limits)
    proxy.wait_for_line(r"resolves to no address", timeout=30)
    return up, proxy


def queue_requests(proxy, n):
    """n requests in threads, once all of them wait in the route's queue."""
    threads, results = start_requests(proxy.port, n)
    wait_until(lambda: metric(proxy, "loopguard_route_queue_depth", route="cpu") == n, 30,
               desc=f"{n} requests queued behind the missing endpoints")
    return threads, results


def start_requests(port, n, path="/echo"):
    results = [None] * n

    def one(i):
        try:
            results[i] = http_request(port, "GET", f"{path}?i={i}", timeout=60)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def join(threads, timeout):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "requests still unanswered"


def test_dns_name_endpoint_is_resolved_and_re_resolved(procs):
    try:
        socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    except OSError as e:  # e.g. a bare chroot without /etc/hosts
        pytest.skip(f"this machine cannot resolve localhost: {e}")
    up = procs.upstream("app")
    config = proxy_config(
        {"app": {"endpoints": [f"localhost:{up.port}"], "resolve_every": "200ms",
                 "connect_timeout": "1s"}},
        [{"name": "default", "match": {"prefix": "/"}, "upstream": "app"}])
    proxy = procs.proxy(config)
    deadline = time.monotonic() + 1.5  # several re-resolutions happen meanwhile
    served = 0
    while time.monotonic() < deadline:
        r = http_request(proxy.port, "GET", "/echo?n=%d" % served, timeout=5)
        assert r.status == 200, r
        served += 1
        time.sleep(0.05)  # the pace of the client across re-resolutions, not an await
    assert served >= 10
    assert up.stats()["requests"] >= served


def test_unresolvable_name_is_refused_at_the_queue_timeout(procs):
    """No endpoints, ever (here the real resolver and a name that cannot exist): the requests
    wait out queue_timeout, then 503 + Retry-After + X-Loopguard-Overload: queue_timeout, with
    a body that says why. Never a hang; with max_queue: 0, refused at once."""
    config = proxy_config(
        {"app": {"endpoints": ["no-such-host.invalid:80"], "resolve_every": "1s"}},
        [{"name": "noqueue", "match": {"prefix": "/nq/"}, "upstream": "app",
          "limits": {"max_queue": 0}},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app",
          "limits": {"queue_timeout": "1s"}}],
        admin={"listen": "127.0.0.1:0"})
    proxy = procs.proxy(config)
    r = http_request(proxy.port, "GET", "/echo", timeout=30)
    body = assert_overload(r, 503, "queue_timeout")
    assert body["route"] == "default"
    assert "no endpoints" in body["error"] or "resolved" in body["error"], body
    assert 0.9 <= r.elapsed < 15, r.elapsed
    assert metric(proxy, "loopguard_route_rejected_total", route="default",
                  reason="queue_timeout") == 1
    r = http_request(proxy.port, "GET", "/nq/echo", timeout=30)
    assert_overload(r, 503, "queue_full")
    assert r.elapsed < 5, r.elapsed


def test_requests_wait_for_a_scaled_out_pool_with_no_pods_and_go_when_it_resolves(procs, dns):
    """Scale-out from zero, then down to zero and up again (a rollout): while the name resolves
    to nothing, requests queue within the route's bounds (none reaches an upstream, none is
    answered); once a lookup finds the pod, every queued request is served."""
    up, proxy = proxy_with_no_endpoints(
        procs, dns, {"max_in_flight": 2, "max_queue": 8, "queue_timeout": "60s"})
    threads, results = queue_requests(proxy, 3)
    assert metric(proxy, "loopguard_route_in_flight", route="cpu") == 0
    assert all(r is None for r in results), results
    assert up.stats()["requests"] == 0

    dns.set("127.0.0.1")  # the pod is ready: the headless Service lists it
    join(threads, 30)
    assert [r.status for r in results] == [200, 200, 200], results
    assert up.stats()["requests"] == 3
    assert metric(proxy, "loopguard_route_rejected_total", route="cpu", reason="queue_timeout") == 0

    # Down to zero again: the endpoint is retired, and new requests wait again.
    seen = len(proxy.stderr_lines)
    dns.set()
    proxy.wait_for_line(r"resolves to no address", timeout=30, start=seen)
    threads, results = queue_requests(proxy, 2)
    assert up.stats()["requests"] == 3
    dns.set("127.0.0.1")
    join(threads, 30)
    assert [r.status for r in results] == [200, 200], results
    assert up.stats()["requests"] == 5


def test_the_queue_bounds_hold_while_there_are_no_endpoints(procs, dns):
    """max_queue and queue_timeout bound the wait for endpoints as they bound any queue: the
    overflow is refused at once (queue_full), the rest after queue_timeout."""
    up, proxy = proxy_with_no_endpoints(
        procs, dns, {"max_in_flight": 1, "max_queue": 2, "queue_timeout": "2s"})
    threads, results = queue_requests(proxy, 2)
    r = http_request(proxy.port, "GET", "/echo", timeout=30)
    assert_overload(r, 503, "queue_full")
    assert r.elapsed < 2, r.elapsed
    join(threads, 30)
    for r in results:
        assert_overload(r, 503, "queue_timeout")
        assert "no endpoints" in r.json()["error"], r
    assert up.stats()["requests"] == 0


def test_endpoints_that_refuse_connections_still_get_502_at_once(procs, dns):
    """Present but refusing (pods listed, process not listening): not a reason to wait; the
    connect failure is a 502 at once, as for any upstream."""
    dead = DeadPort()
    procs.on_cleanup(dead.close)
    dns.set("127.0.0.1")
    proxy = scale_out_proxy(procs, dns, dead.port,
                            {"max_in_flight": 2, "max_queue": 8, "queue_timeout": "30s"})
    r = http_request(proxy.port, "GET", "/echo", timeout=30)
    assert r.status == 502, r
    assert r.header("x-loopguard-overload") is None, r
    assert r.elapsed < 5, r.elapsed
    assert metric(proxy, "loopguard_upstream_errors_total", upstream="pool", kind="connect") >= 1


def test_an_adaptive_route_waits_for_endpoints_too(procs, dns):
    """max_in_flight: auto: the shared adaptive limit asks the cluster's gate in turn, and the
    cluster's first lookup that finds a pod lets its queue go."""
    up, proxy = proxy_with_no_endpoints(
        procs, dns, {"max_in_flight": "auto", "max_queue": 8, "queue_timeout": "60s"})
    threads, results = queue_requests(proxy, 2)
    assert up.stats()["requests"] == 0
    dns.set("127.0.0.1")
    join(threads, 30)
    assert [r.status for r in results] == [200, 200], results
