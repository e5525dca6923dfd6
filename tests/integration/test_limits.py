"""Per-route concurrency limits: max_in_flight, a bounded FIFO queue, queue_timeout,
overflow_status, and slots/places given back when clients go away (exactly once).

Where a request must be queued before the next step, the test waits for the route's gauges on
the admin /metrics (wait_route); what the upstream can observe (requests in flight) is awaited
by polling its stats."""

import pytest

from harness import (Pending, RawConn, assert_overload, build_request, http_request, metric,
                     proxy_config, wait_route, wait_until)

ADMIN = {"listen": "127.0.0.1:0"}


@pytest.fixture
def env(procs):
    up = procs.upstream("app")
    config = proxy_config(
        {"app": {"endpoints": [up.address]}},
        [{"name": "limited", "match": {"prefix": "/limited/"}, "upstream": "app",
          "limits": {"max_in_flight": 2, "max_queue": 3, "queue_timeout": "10s"}},
         {"name": "qt", "match": {"prefix": "/qt/"}, "upstream": "app",
          "limits": {"max_in_flight": 1, "max_queue": 5, "queue_timeout": "300ms"}},
         {"name": "r429", "match": {"prefix": "/r429/"}, "upstream": "app",
          "limits": {"max_in_flight": 1, "max_queue": 1, "queue_timeout": "5s",
                     "overflow_status": 429}},
         {"name": "one", "match": {"prefix": "/one/"}, "upstream": "app",
          "limits": {"max_in_flight": 1, "max_queue": 1, "queue_timeout": "1s"}},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        admin=ADMIN)
    return procs.proxy(config), up


def arrived(proxy, route):
    """Requests of `route` the proxy has taken in: holding a slot, queued, or refused as full."""
    return sum(metric(proxy, name, route=route, **labels) or 0 for name, labels in [
        ("loopguard_route_in_flight", {}), ("loopguard_route_queue_depth", {}),
        ("loopguard_route_rejected_total", {"reason": "queue_full"})])


def send_in_order(proxy, route, paths):
    """Sends one request per path, each once the proxy has taken the one before in: so the
    arrival order, and who is served, is known."""
    pending = []
    base = arrived(proxy, route)
    for i, path in enumerate(paths):
        pending.append(Pending(proxy.port, path))
        wait_until(lambda: arrived(proxy, route) >= base + i + 1, 5,
                   desc=f"request {i} of {route} taken in")
    return pending


def ids_in(log, prefix):
    """The id= values of logged requests whose target starts with prefix, in arrival order."""
    out = []
    for entry in log:
        target = entry.split(" ", 1)[1]
        if target.startswith(prefix) and "id=" in target:
            out.append(target.split("id=")[1].split("&")[0])
    return out


def test_ten_concurrent_requests_two_in_flight_three_queued_five_refused_at_once(env):
    proxy, up = env
    pending = send_in_order(proxy, "limited",
                            [f"/limited/delay?ms=1000&id={i}" for i in range(10)])
    # A saturated route does not slow down the others.
    other = http_request(proxy.port, "GET", "/echo")
    assert other.status == 200 and other.elapsed < 0.5, other
    results = [p.result() for p in pending]

    served = [i for i, r in enumerate(results) if r.status == 200]
    assert served == [0, 1, 2, 3, 4], [(r.status, round(r.elapsed, 2)) for r in results]
    for i in range(5, 10):
        assert_overload(results[i], 503, "queue_full")
        assert results[i].elapsed < 0.3, f"refusal {i} took {results[i].elapsed:.2f}s, not at once"
    s = up.stats()
    assert s["group_peaks"]["/limited"] == 2, s
    assert ids_in(s["log"], "/limited/") == ["0", "1", "2", "3", "4"], "not served in FIFO order"
    # 2 in flight at a time: requests 2 and 3 wait one round, request 4 two rounds.
    assert results[4].elapsed > max(results[2].elapsed, results[3].elapsed) + 0.5, \
        [round(r.elapsed, 2) for r in results[:5]]


def test_request_queued_longer_than_queue_timeout_gets_503_queue_timeout(env):
    proxy, up = env
    first = Pending(proxy.port, "/qt/delay?ms=1500&id=first")
    up.wait_stats(lambda s: s["in_flight"] == 1, desc="first request in flight")
    second = Pending(proxy.port, "/qt/echo?id=second")
    r = second.result()
    assert_overload(r, 503, "queue_timeout")
    assert 0.25 <= r.elapsed <= 1.0, f"queue timeout after {r.elapsed:.2f}s (300ms configured)"
    assert first.result().status == 200
    assert "second" not in ids_in(up.stats()["log"], "/qt/"), "a timed-out request was forwarded"


def test_overflow_status_429_is_used_when_configured(env):
    proxy, up = env
    running = Pending(proxy.port, "/r429/delay?ms=1000&id=a")
    up.wait_stats(lambda s: s["in_flight"] == 1, desc="first request in flight")
    queued = Pending(proxy.port, "/r429/echo?id=b")
    wait_route(proxy, "r429", queued=1)
    refused = Pending(proxy.port, "/r429/echo?id=c").result()
    assert_overload(refused, 429, "queue_full")
    assert refused.elapsed < 0.3
    assert running.result().status == 200
    assert queued.result().status == 200


def test_queued_clients_that_hang_up_free_their_places(env):
    proxy, up = env
    running = [Pending(proxy.port, f"/limited/delay?ms=1500&id=r{i}") for i in range(2)]
    up.wait_stats(lambda s: s["in_flight"] == 2, desc="two requests in flight")
    quitters = [Pending(proxy.port, f"/limited/echo?id=q{i}", read=False) for i in range(3)]
    wait_route(proxy, "limited", queued=3)
    for q in quitters:
        q.hang_up()
    wait_route(proxy, "limited", queued=0)
    # The three places are free again: three new requests are queued, not refused ...
    newcomers = [Pending(proxy.port, f"/limited/echo?id=n{i}") for i in range(3)]
    wait_route(proxy, "limited", queued=3)
    # ... and the queue bound still holds: the next one is refused at once.
    extra = Pending(proxy.port, "/limited/echo?id=extra").result()
    assert_overload(extra, 503, "queue_full")
    for p in running + newcomers:
        assert p.result().status == 200
    forwarded = ids_in(up.stats()["log"], "/limited/")
    assert not [i for i in forwarded if i.startswith("q")], f"hung-up requests forwarded: {forwarded}"
    assert sorted(forwarded) == ["n0", "n1", "n2", "r0", "r1"], forwarded


def test_slot_is_released_when_client_disconnects_mid_response(env):
    proxy, up = env
    c = RawConn(proxy.port)
    c.send(build_request("GET", "/one/stream?n=209715200"))  # 200 MiB
    _, status, _, _ = c.read_head()
    assert status == 200
    c.read_exact(256 * 1024)
    c.hang_up()
    # With the slot leaked, this would wait in the queue and get 503 after queue_timeout (1s).
    r = http_request(proxy.port, "GET", "/one/echo", timeout=5)
    assert r.status == 200, r
    # Nobody reads the rest of the 200 MiB: the upstream connection is closed too.
    up.wait_stats(lambda s: s["aborted"] >= 1, timeout=5, desc="upstream stream aborted")


def test_slot_is_released_when_client_disconnects_before_the_response(env):
    proxy, up = env
    gone = Pending(proxy.port, "/one/delay?ms=3000&id=gone", read=False)
    up.wait_stats(lambda s: s["in_flight"] == 1, desc="request in flight")
    gone.hang_up()
    r = http_request(proxy.port, "GET", "/one/echo?id=next", timeout=5)
    assert r.status == 200, r
    assert r.elapsed < 1.5, f"took {r.elapsed:.2f}s: the slot was held until the upstream answered"
    up.wait_stats(lambda s: s["aborted"] >= 1, timeout=3, desc="upstream request abandoned")


def test_slot_is_released_exactly_once_after_disconnects(env):
    proxy, up = env
    for _ in range(3):  # churn: clients gone mid-wait and mid-response
        gone = Pending(proxy.port, "/one/delay?ms=2000", read=False)
        up.wait_stats(lambda s: s["in_flight"] == 1, desc="request in flight")
        gone.hang_up()
        up.wait_stats(lambda s: s["in_flight"] == 0, desc="upstream request abandoned")
        c = RawConn(proxy.port)
        c.send(build_request("GET", "/one/stream?n=104857600"))
        c.read_head()
        c.hang_up()
    up.wait_stats(lambda s: s["in_flight"] == 0, desc="streams abandoned")
    up.reset_stats()
    burst = send_in_order(proxy, "one", [f"/one/delay?ms=400&id=b{i}" for i in range(3)])
    statuses = [p.result().status for p in burst]
    assert statuses == [200, 200, 503], statuses  # 1 in flight, 1 queued, 1 refused
    assert up.stats()["group_peaks"]["/one"] == 1, "a slot was released twice: 2 requests in flight"


def test_route_without_limits_runs_all_requests_concurrently(env):
    proxy, up = env
    pending = [Pending(proxy.port, f"/free/delay?ms=700&id={i}") for i in range(12)]
    results = [p.result() for p in pending]
    assert [r.status for r in results] == [200] * 12
    assert up.stats()["group_peaks"]["/free"] == 12
    assert max(r.elapsed for r in results) < 1.5
