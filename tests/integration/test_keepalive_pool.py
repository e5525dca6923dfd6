"""Upstream balancing and the keep-alive pool: round_robin and least_request over two upstream
processes, idle_timeout and max_idle_connections, and the retry rule: an idempotent request whose
pooled connection died before any response byte is retried once; a POST never is."""
import socket
import time

import pytest

from harness import (Background, RawConn, assert_proxy_error, build_request, http_request,
                     metric, proxy_config, wait_route, wait_until)


@pytest.fixture
def pair(procs):
    return procs.upstream("A"), procs.upstream("B")


def test_round_robin_alternates_between_endpoints(procs, pair):
    a, b = pair
    proxy = procs.proxy(proxy_config(
        {"rr": {"endpoints": [a.address, b.address], "balance": "round_robin"}},
        [{"name": "rr", "match": {"prefix": "/"}, "upstream": "rr"}]))
    names = [http_request(proxy.port, "GET", f"/echo?i={i}").header("x-upstream") for i in range(20)]
    assert names.count("A") == 10 and names.count("B") == 10, names
    assert all(x != y for x, y in zip(names, names[1:])), f"not alternating: {names}"


def test_least_request_avoids_the_endpoint_with_a_request_in_flight(procs, pair):
    a, b = pair
    proxy = procs.proxy(proxy_config(
        {"lr": {"endpoints": [a.address, b.address], "balance": "least_request"}},
        [{"name": "lr", "match": {"prefix": "/"}, "upstream": "lr"}]))
    slow = Background(http_request, proxy.port, "GET", "/delay?ms=2000", timeout=10)
    busy = None
    deadline = time.monotonic() + 5
    while busy is None:
        assert time.monotonic() < deadline, "slow request never reached an upstream"
        for up in pair:
            if up.stats()["in_flight"] == 1:
                busy = up
    idle = b if busy is a else a
    names = [http_request(proxy.port, "GET", f"/echo?i={i}").header("x-upstream") for i in range(10)]
    assert names == [idle.name] * 10, f"{busy.name} has a request in flight, yet got some: {names}"
    assert slow.result().status == 200


def test_pooled_connection_is_reused_then_dropped_after_idle_timeout(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config(
        {"app": {"endpoints": [up.address], "idle_timeout": "500ms"}},
        [{"name": "default", "match": {"prefix": "/"}, "upstream": "app"}]))
    first = http_request(proxy.port, "GET", "/echo").json()
    second = http_request(proxy.port, "GET", "/echo").json()
    assert second["conn_id"] == first["conn_id"], "not reused within idle_timeout"
    t_idle = time.monotonic()
    up.wait_stats(lambda s: s["open_connections"] == 0, timeout=3,
                  desc="proxy to drop its idle pooled connection")
    idle_for = time.monotonic() - t_idle
    assert idle_for >= 0.4, f"dropped after {idle_for:.2f}s, idle_timeout is 500ms"
    third = http_request(proxy.port, "GET", "/echo").json()
    assert third["conn_id"] != first["conn_id"]
    assert up.stats()["connections"] == 2


def test_max_idle_connections_caps_the_pool(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config(
        {"app": {"endpoints": [up.address], "max_idle_connections": 1}},
        [{"name": "default", "match": {"prefix": "/"}, "upstream": "app"}]))
    jobs = [Background(http_request, proxy.port, "GET", "/delay?ms=300") for _ in range(3)]
    assert [j.result().status for j in jobs] == [200] * 3
    assert up.stats()["connections"] == 3
    up.wait_stats(lambda s: s["open_connections"] == 1, timeout=3,
                  desc="pool to keep only one idle connection")
    for i in range(3):
        assert http_request(proxy.port, "GET", f"/echo?i={i}").status == 200
    s = up.stats()
    assert s["connections"] == 3 and s["open_connections"] == 1, s


# ---- retries ------------------------------------------------------------------------------------------
@pytest.fixture
def retry_env(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config(
        {"app": {"endpoints": [up.address], "idle_timeout": "10s"}},
        [{"name": "default", "match": {"prefix": "/"}, "upstream": "app"}]))
    return proxy, up


def test_get_on_pooled_connection_closed_by_upstream_is_retried_transparently(retry_env):
    proxy, up = retry_env
    assert http_request(proxy.port, "GET", "/k/echo?id=warm").status == 200
    up.configure(drop_next=1)  # the next request is read, then its connection closed unanswered
    r = http_request(proxy.port, "GET", "/k/echo?id=retried")
    assert r.status == 200, r
    s = up.stats()
    assert s["dropped"] == 1
    assert s["log"].count("GET /k/echo?id=retried") == 2, s["log"]
    assert s["connections"] == 2, "the retry must use a new connection"


def test_post_on_pooled_connection_closed_by_upstream_is_not_retried(retry_env):
    proxy, up = retry_env
    assert http_request(proxy.port, "GET", "/k/echo?id=warm").status == 200
    up.configure(drop_next=1)
    r = http_request(proxy.port, "POST", "/k/echo?id=once", body=b"payload")
    assert_proxy_error(r, 502, route="default")
    s = up.stats()
    assert s["dropped"] == 1
    assert s["log"].count("POST /k/echo?id=once") == 1, s["log"]


def test_get_is_not_retried_after_response_bytes_arrived(retry_env):
    proxy, up = retry_env
    with RawConn(proxy.port) as c:
        c.send(build_request("GET", "/reset?when=partial&n=1000"))
        _, status, _, headers = c.read_head()
        assert status == 200
        rest = c.wait_closed(3)
    assert len(rest) < 2000, "a truncated upstream response must reach the client truncated"
    assert up.stats()["resets"] == 1, "retried although response bytes had arrived"


def test_requests_after_upstream_closed_idle_connection_succeed(retry_env):
    """The upstream closes idle keep-alive connections after 300 ms, long before the proxy's
    idle_timeout (10s): the proxy must notice instead of writing on a dead connection - for a
    POST too, which could not be retried."""
    proxy, up = retry_env
    up.configure(keepalive_ms=300)
    for i, method in enumerate(["GET", "GET", "POST", "POST"]):
        r = http_request(proxy.port, method, f"/echo?i={i}", body=b"x" if method == "POST" else None)
        assert r.status == 200, (method, r)
        up.wait_stats(lambda s, n=i + 1: s["idle_closes"] >= n, timeout=3,
                      desc="upstream to close the idle connection")
    assert up.stats()["connections"] == 4, "each request should have needed a new connection"


# ---- bursts wider than the handshakes in flight ---------------------------------------------------
# At most max(64, max_idle_connections) connects per endpoint are in progress at once; requests
# beyond that queue for whichever connection frees up or handshake ends first.
def test_burst_of_slow_requests_wider_than_the_connect_cap_is_served_in_full(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config(
        {"app": {"endpoints": [up.address], "max_idle_connections": 4}},
        [{"name": "default", "match": {"prefix": "/"}, "upstream": "app",
          "limits": {"max_in_flight": 1000}}]))
    jobs = [Background(http_request, proxy.port, "GET", f"/delay?ms=400&i={i}", timeout=15)
            for i in range(200)]
    statuses = [j.result().status for j in jobs]
    assert statuses == [200] * 200, {s: statuses.count(s) for s in set(statuses)}
    s = up.stats()
    assert s["requests"] >= 200 and s["peak_in_flight"] > 64, s


def test_queued_requests_fail_over_with_the_first_connect_timeout(procs, blackhole):
    """Every handshake hangs: 64 connects wait out connect_timeout, the rest queue behind them.
    When the first times out, the queue fails at once (502) instead of waiting one timeout per
    round of 64; clients that leave while queued are simply dropped."""
    proxy = procs.proxy(proxy_config(
        {"hole": {"endpoints": [blackhole.address], "connect_timeout": "600ms"}},
        [{"name": "hole", "match": {"prefix": "/"}, "upstream": "hole",
          "limits": {"max_in_flight": 1000}}], admin={"listen": "127.0.0.1:0"}))
    leavers = []
    for i in range(30):
        s = socket.create_connection(("127.0.0.1", proxy.port))
        s.sendall(build_request("GET", f"/leave?i={i}"))
        leavers.append(s)
    jobs = [Background(http_request, proxy.port, "GET", f"/hole?i={i}", timeout=10)
            for i in range(160)]
    wait_route(proxy, "hole", in_flight=190)  # every request is waiting for a connection
    for s in leavers:
        s.close()
    results = [j.result() for j in jobs]
    for r in results:
        assert_proxy_error(r, 502, route="hole")
    slowest = max(r.elapsed for r in results)
    # Two rounds of handshakes would take 1.2 s; the requests were all sent within ~0.2 s.
    assert slowest < 1.1, f"slowest 502 after {slowest:.2f}s (connect_timeout 600ms)"
    assert http_request(proxy.port, "GET", "/hole/again", timeout=5).status == 502


def test_least_request_steers_away_from_an_endpoint_that_does_not_accept(procs, blackhole):
    """A connect that hangs counts as load: after one request is stuck connecting to the
    black-holed endpoint, the others go to the live one instead of alternating into the hole."""
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config(
        {"pair": {"endpoints": [blackhole.address, up.address], "balance": "least_request",
                  "connect_timeout": "3s"}},
        [{"name": "pair", "match": {"prefix": "/"}, "upstream": "pair"}],
        admin={"listen": "127.0.0.1:0"}))
    stuck = Background(http_request, proxy.port, "GET", "/stuck", timeout=10)
    # It is stuck connecting to the hole, or it went to the live endpoint and is over.
    wait_until(lambda: not stuck.is_alive() or metric(proxy, "loopguard_route_in_flight",
                                                      route="pair") == 1,
               5, desc="the first request to be in flight or done")
    slow = []
    for i in range(8):
        r = http_request(proxy.port, "GET", f"/echo?i={i}", timeout=10)
        assert r.status == 200, r
        if r.elapsed > 1.0:
            slow.append(i)
    # The first request may have taken the live endpoint; then one more can hit the hole.
    assert len(slow) <= 1, f"requests {slow} waited on the black-holed endpoint"
    assert stuck.result().status == 200  # failed over to the live endpoint after 3 s
