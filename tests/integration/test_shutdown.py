"""Graceful shutdown: SIGTERM/SIGINT stop accepting, let in-flight requests finish (up to
timeouts.drain), close idle connections, exit 0 and leave no child process; a second signal exits
at once."""
import signal
import socket
import time

from harness import (FAKE_UPSTREAM, PYTHON, HarnessError, Pending, RawConn, build_request,
                     descendants, http_request, pid_alive, proxy_config, simple_config, wait_until)


def drain_config(up, drain):
    return simple_config(up, admin={"listen": "127.0.0.1:0"}, timeouts={"drain": drain})


def wait_draining(proxy, timeout=2.0):
    """The drain has begun once the admin /readyz answers 503."""
    wait_until(lambda: http_request(proxy.admin_port, "GET", "/readyz", timeout=2).status == 503,
               timeout, interval=0.02, desc="/readyz to answer 503 (draining)")


def new_connection_is_not_kept_alive(proxy):
    """During a drain a new connection is refused, left unaccepted, closed unanswered, or served
    with "Connection: close" and then closed - never kept alive. (SPEC says "stop accepting";
    ProxyServer::drain deliberately keeps accepting while work remains, for Kubernetes.)"""
    try:
        with RawConn(proxy.port, timeout=0.5) as c:
            c.send(build_request("GET", "/echo?during-drain"))
            r = c.read_response(timeout=2)
            if "close" not in (r.header("connection") or "").lower():
                return False
            c.wait_closed(2)
            return True
    except (ConnectionError, socket.timeout):
        return True
    except HarnessError as e:  # closed without a response
        return "closed" in str(e).lower()


def test_sigterm_lets_in_flight_request_finish_then_exits_0(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(drain_config(up, "10s"))
    inflight = Pending(proxy.port, "/delay?ms=1500&id=inflight")
    up.wait_stats(lambda s: s["in_flight"] == 1, desc="request in flight")
    t_sig = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    wait_draining(proxy)
    assert new_connection_is_not_kept_alive(proxy)
    r = inflight.result()
    assert r.status == 200, r
    assert r.json()["query"] == "ms=1500&id=inflight"
    assert proxy.wait_exit(5) == 0, proxy.log_text()
    assert time.monotonic() - t_sig >= 1.0, "exited before the in-flight request could finish"


def test_sigterm_closes_idle_connections_and_exits_promptly(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(simple_config(up, timeouts={"drain": "20s", "idle": "60s"}))
    c = RawConn(proxy.port)
    assert c.request("GET", "/echo").status == 200
    t_sig = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait_exit(5) == 0
    assert time.monotonic() - t_sig < 2.0, "an idle keep-alive connection held up the shutdown"
    assert c.wait_closed(2) == b""
    c.close()


def test_sigint_drains_like_sigterm(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(simple_config(up))
    assert http_request(proxy.port, "GET", "/echo").status == 200
    proxy.stop(sig=signal.SIGINT, timeout=5)


def test_drain_timeout_bounds_the_shutdown(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(simple_config(up, timeouts={"drain": "1s"}))
    stuck = Pending(proxy.port, "/delay?ms=10000")
    up.wait_stats(lambda s: s["in_flight"] == 1, desc="request in flight")
    t_sig = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait_exit(5) == 0, proxy.log_text()
    took = time.monotonic() - t_sig
    assert 0.8 <= took <= 3.0, f"exited {took:.2f}s after SIGTERM with drain: 1s"
    try:
        r = stuck.result(5)
        assert r.status != 200, "the request outliving the drain budget cannot have succeeded"
    except (HarnessError, ConnectionError, socket.timeout):
        pass  # closed (or reset) without a response: what a cut-off client sees


def test_second_sigterm_exits_at_once(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(drain_config(up, "30s"))
    held = Pending(proxy.port, "/delay?ms=20000", read=False)  # keep a reference: GC would close it
    up.wait_stats(lambda s: s["in_flight"] == 1, desc="request in flight")
    proxy.send_signal(signal.SIGTERM)
    wait_draining(proxy)
    assert proxy.running(), "exited on the first SIGTERM despite a request in flight"
    t = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    proxy.wait_exit(2)
    assert time.monotonic() - t < 1.0
    held.hang_up()


def test_sigterm_stops_pool_workers_and_leaves_no_child(procs):
    """With a pool of two workers (fake upstreams on {socket}), the proxy's children all exit."""
    pool_cfg = {"cpu": {"command": [PYTHON, FAKE_UPSTREAM, "--unix", "{socket}", "--name", "worker"],
                        "workers": 2}}
    proxy = procs.proxy(proxy_config({}, [{"name": "cpu", "match": {"prefix": "/cpu/"},
                                           "pool": "cpu"}], pools=pool_cfg,
                                     timeouts={"drain": "5s"}))
    r = http_request(proxy.port, "GET", "/cpu/echo", timeout=15)
    assert r.status == 200 and r.json()["upstream"] == "worker", r
    wait_until(lambda: len(descendants(proxy.pid)) >= 2, 10, desc="two worker processes")
    kids = descendants(proxy.pid)
    proxy.stop(timeout=10)  # also checks that no descendant outlived it
    assert not [k for k in kids if pid_alive(k)]
