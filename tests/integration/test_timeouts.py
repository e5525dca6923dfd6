"""Timeouts and upstream failures: header timeout (slowloris), keep-alive idle timeout, upstream
response and read timeouts, route timeout, refused / reset / black-holed upstreams and endpoint
failover. (The request body timeout has its own file, test_body_timeout.py.)"""
import http.client
import json
import selectors
import threading
import time

import pytest

from harness import (Background, DeadPort, RawConn, assert_proxy_error, build_request,
                     http_request, metric, pattern_bytes, proxy_config, wait_until, MiB)

HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0


@pytest.fixture
def dead(procs):
    d = DeadPort()
    procs.on_cleanup(d.close)
    return d


@pytest.fixture
def env(procs, dead):
    """Routes (by prefix) to upstreams that share one fake upstream process but differ in their
    timeouts, plus a refused endpoint and a failover pair."""
    up = procs.upstream("app")
    config = proxy_config(
        {"app": {"endpoints": [up.address]},
         "slowup": {"endpoints": [up.address], "response_timeout": "500ms"},
         "readslow": {"endpoints": [up.address], "read_timeout": "500ms"},
         "dead": {"endpoints": [dead.address], "connect_timeout": "500ms"},
         "failover": {"endpoints": [dead.address, up.address], "balance": "round_robin"}},
        [{"name": "slowup", "match": {"prefix": "/slowup/"}, "upstream": "slowup"},
         {"name": "readslow", "match": {"prefix": "/readslow/"}, "upstream": "readslow"},
         {"name": "budget", "match": {"prefix": "/budget/"}, "upstream": "app",
          "timeout": "500ms"},
         {"name": "dead", "match": {"prefix": "/dead/"}, "upstream": "dead"},
         {"name": "failover", "match": {"prefix": "/failover/"}, "upstream": "failover"},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        timeouts={"header": "1s", "idle": "2s"}, admin={"listen": "127.0.0.1:0"})
    return procs.proxy(config), up


# ---- client side: header and idle timeouts ---------------------------------------------------------
def test_slowloris_connections_get_408_after_header_timeout_without_delaying_others(env):
    proxy, up = env
    n = 50
    conns, started = [], []
    for _ in range(n):
        started.append(time.monotonic())
        c = RawConn(proxy.port)
        c.send(b"GET /echo HTTP/1.1\r\nHost: test.local\r\nX-Slow: ")
        conns.append(c)
    stop = threading.Event()
    done = set()

    def trickle():  # one byte per connection every 100 ms; the head never completes
        while not stop.is_set():
            for i, c in enumerate(conns):
                if i not in done and not c.try_send(b"a"):
                    done.add(i)
            stop.wait(0.1)

    trickler = Background(trickle)
    try:
        # While the slow heads are pending, normal requests are served at once.
        for i in range(5):
            r = http_request(proxy.port, "GET", f"/echo?normal={i}", timeout=5)
            assert r.status == 200, r
            assert r.elapsed < 0.5, f"normal request took {r.elapsed:.3f}s behind slowloris clients"

        # Every slow connection gets 408 and is closed after about the header timeout.
        sel = selectors.DefaultSelector()
        for i, c in enumerate(conns):
            c.sock.setblocking(False)
            sel.register(c.sock, selectors.EVENT_READ, i)
        received = {i: bytearray() for i in range(n)}
        closed_at = {}
        deadline = time.monotonic() + HEADER_TIMEOUT + 4
        while len(closed_at) < n and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.1):
                i = key.data
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                if data:
                    received[i] += data
                else:
                    closed_at[i] = time.monotonic()
                    done.add(i)
                    sel.unregister(key.fileobj)
        sel.close()
    finally:
        stop.set()
        trickler.result()
        for c in conns:
            c.close()
    assert len(closed_at) == n, f"{n - len(closed_at)} slow connections still open"
    for i in range(n):
        head = bytes(received[i])
        assert head.startswith(b"HTTP/1.1 408 ") or head.startswith(b"HTTP/1.0 408 "), \
            f"connection {i} got {head[:200]!r}"
        assert b"application/json" in head.lower()
        elapsed = closed_at[i] - started[i]
        assert HEADER_TIMEOUT - 0.1 <= elapsed <= HEADER_TIMEOUT + 1.5, \
            f"connection {i} closed after {elapsed:.2f}s (header timeout {HEADER_TIMEOUT}s)"
    assert up.stats()["requests"] == 5, "a partial head was forwarded"


def test_idle_keepalive_connection_is_closed_after_idle_timeout(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        assert c.request("GET", "/echo").status == 200
        t0 = time.monotonic()
        leftover = c.wait_closed(IDLE_TIMEOUT + 3)
        elapsed = time.monotonic() - t0
    assert leftover == b"", f"an idle connection got bytes: {leftover[:200]!r}"
    # idle (2s), not the header timeout (1s), governs a connection between requests
    assert IDLE_TIMEOUT - 0.2 <= elapsed <= IDLE_TIMEOUT + 1.5, f"closed after {elapsed:.2f}s"


def test_keepalive_connection_used_within_idle_timeout_stays_open(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        for i in range(3):
            assert c.request("GET", f"/echo?i={i}").status == 200
            assert c.read_available(IDLE_TIMEOUT * 0.6) == b"" and not c.eof
        assert c.request("GET", "/echo?last").status == 200


# ---- upstream side ------------------------------------------------------------------------------------------
def response_cut_after_head(proxy, path):
    """GET path: a 200 head arrives, then the connection closes before the body is whole.
    Returns the body bytes that came and the seconds from the request to the close."""
    with RawConn(proxy.port) as c:
        t0 = time.monotonic()
        c.send(build_request("GET", path))
        _, status, _, _ = c.read_head(timeout=2)
        assert status == 200
        rest = c.wait_closed(timeout=3)
        return rest, time.monotonic() - t0



def test_upstream_response_timeout_gives_504_json_and_drops_the_connection(env):
    proxy, up = env
    up.reset_stats()
    with RawConn(proxy.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/slowup/delay?ms=3000", timeout=5)
        elapsed = time.monotonic() - t0
    assert_proxy_error(r, 504, route="slowup")
    assert r.header("x-loopguard-overload") is None
    assert 0.4 <= elapsed <= 1.5, f"504 after {elapsed:.2f}s (response_timeout 500ms)"
    # The upstream connection with a response still owed is closed, not reused.
    up.wait_stats(lambda s: s["aborted"] >= 1, timeout=3, desc="proxy to close the upstream conn")
    assert http_request(proxy.port, "GET", "/slowup/echo").status == 200


def test_upstream_response_timeout_covers_only_the_response_head(env):
    proxy, _ = env
    r = http_request(proxy.port, "GET", "/slowup/slowhead?ms=0&body_ms=1200&n=1000", timeout=5)
    assert r.status == 200, r
    assert r.body == pattern_bytes(0, 1000)


def test_upstream_read_timeout_cuts_a_response_whose_body_stops(env):
    """A head promising 1e9 bytes, 10 of them, then silence: the client has the 10 bytes and
    then the close, at read_timeout; the upstream connection is closed and counted."""
    proxy, up = env
    up.reset_stats()
    rest, elapsed = response_cut_after_head(proxy, "/readslow/stall?n=10")
    assert rest == pattern_bytes(0, 10)
    assert 0.4 <= elapsed <= 1.5, f"cut after {elapsed:.2f}s (read_timeout 500ms)"
    up.wait_stats(lambda s: s["aborted"] == 1, timeout=3, desc="the upstream connection to close")
    assert metric(proxy, "loopguard_upstream_errors_total", upstream="readslow", kind="timeout") == 1
    assert metric(proxy, "loopguard_connections", side="upstream") == 0
    assert http_request(proxy.port, "GET", "/readslow/echo").status == 200


def test_upstream_read_timeout_is_the_longest_silence_not_the_whole_body(env):
    proxy, _ = env
    # Five chunks 300 ms apart: 1.2 s in all, never 500 ms without a byte.
    r = http_request(proxy.port, "GET", "/readslow/drip?n=5&ms=300", timeout=5)
    assert r.status == 200, r
    assert r.body.count(b"chunk-") == 5 and b"chunk-4;" in r.body
    assert metric(proxy, "loopguard_upstream_errors_total", upstream="readslow", kind="timeout") == 0


def test_upstream_read_timeout_covers_a_request_body_the_upstream_stops_reading(env):
    """An upstream that never reads the request body: once the socket buffers are full the
    proxy's write waits; read_timeout later the client gets 504 (no response byte had been sent),
    delivered while it is still sending (lingering close), and the connection is closed."""
    proxy, up = env
    body = b"b" * (16 * MiB)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    t0 = time.monotonic()
    try:
        conn.request("POST", "/readslow/hold?ms=10000", body=body)
        r = conn.getresponse()
        payload = r.read()
    finally:
        conn.close()
    elapsed = time.monotonic() - t0
    assert r.status == 504, (r.status, payload)
    assert json.loads(payload)["route"] == "readslow", payload
    # A stalled write is noticed within one to two read_timeouts, after the buffers filled.
    assert 0.4 <= elapsed <= 3.0, f"504 after {elapsed:.2f}s (read_timeout 500ms)"
    wait_until(lambda: metric(proxy, "loopguard_connections", side="upstream") == 0, 3,
               desc="the upstream connection to be closed")
    assert metric(proxy, "loopguard_upstream_errors_total", upstream="readslow", kind="timeout") == 1


def test_route_timeout_gives_504_json(env):
    proxy, _ = env
    t0 = time.monotonic()
    r = http_request(proxy.port, "GET", "/budget/delay?ms=3000", timeout=5)
    elapsed = time.monotonic() - t0
    assert_proxy_error(r, 504, route="budget")
    assert 0.4 <= elapsed <= 1.5, f"504 after {elapsed:.2f}s (route timeout 500ms)"


def test_route_timeout_after_response_head_cuts_the_response(env):
    proxy, _ = env
    rest, elapsed = response_cut_after_head(proxy, "/budget/slowhead?ms=0&body_ms=3000&n=1000")
    assert len(rest) < 1000, "the whole body arrived although the route budget had passed"
    assert 0.4 <= elapsed <= 1.5, f"cut after {elapsed:.2f}s (route timeout 500ms)"


def test_refused_upstream_gives_502_json(env):
    proxy, _ = env
    t0 = time.monotonic()
    r = http_request(proxy.port, "GET", "/dead/echo", timeout=5)
    assert_proxy_error(r, 502, route="dead")
    assert time.monotonic() - t0 < 1.0, "a refused connect must fail fast"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_upstream_reset_before_responding_gives_502(env, method):
    proxy, up = env
    up.reset_stats()
    r = http_request(proxy.port, method, "/reset", body=b"x" if method == "POST" else None)
    assert_proxy_error(r, 502, route="default")
    resets = up.stats()["resets"]
    if method == "POST":
        assert resets == 1, "a POST that reached the upstream must never be retried"
    else:
        assert resets in (1, 2), f"a GET may be retried once, not {resets - 1} times"


def test_upstream_rst_before_responding_gives_502(env):
    proxy, _ = env
    r = http_request(proxy.port, "POST", "/reset?rst=1", body=b"x")
    assert_proxy_error(r, 502, route="default")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_refused_endpoint_is_skipped_for_the_next_one(env, method):
    """endpoints [refused, live]: a request that could not even connect is safe to send to the
    next endpoint, whatever its method."""
    proxy, up = env
    for i in range(6):
        r = http_request(proxy.port, method, f"/failover/echo?i={i}",
                         body=b"payload" if method == "POST" else None, timeout=5)
        assert r.status == 200, r
        assert r.elapsed < 1.5


def test_connect_timeout_to_blackholed_endpoint(procs, blackhole):
    """A SYN nobody answers: connect_timeout gives 502 alone, and failover to a live endpoint."""
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config(
        {"hole": {"endpoints": [blackhole.address], "connect_timeout": "300ms"},
         "pair": {"endpoints": [blackhole.address, up.address], "connect_timeout": "300ms",
                  "balance": "round_robin"}},
        [{"name": "hole", "match": {"prefix": "/hole/"}, "upstream": "hole"},
         {"name": "pair", "match": {"prefix": "/pair/"}, "upstream": "pair"}]))
    t0 = time.monotonic()
    r = http_request(proxy.port, "GET", "/hole/echo", timeout=5)
    elapsed = time.monotonic() - t0
    assert_proxy_error(r, 502, route="hole")
    assert 0.25 <= elapsed <= 1.5, f"502 after {elapsed:.2f}s (connect_timeout 300ms)"
    for i in range(4):
        r = http_request(proxy.port, "GET", f"/pair/echo?i={i}", timeout=5)
        assert r.status == 200, r
        assert r.elapsed < 1.5
