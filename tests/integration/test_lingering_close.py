"""Lingering close: a request refused for its size is answered even while the client is still
sending it. The proxy writes the answer, shuts down its sending side and reads and drops what
the client still sends, so the close is a FIN after the answer, not a reset that can destroy it.
(Issue 8, item 4: with Python's http.client sending 50 MB to a 1 MiB limit, 20 of 20 uploads
got a reset instead of their 413; nginx delivered 20 of 20.)"""
import http.client
import time

import pytest

from harness import (RawConn, assert_proxy_error, http_request, metric, proxy_config, wait_until,
                     MiB)

UPLOAD = b"u" * (50 * 1000 * 1000)
LINGER_QUIET = 5.0  # ClientConnection::kLingerQuietMs


@pytest.fixture(scope="module")
def env(module_procs):
    up = module_procs.upstream("app")
    config = proxy_config(
        {"app": {"endpoints": [up.address]}},
        [{"name": "one", "match": {"prefix": "/one/"}, "upstream": "app",
          "limits": {"max_in_flight": 1}},
         {"name": "small", "match": {"prefix": "/small/"}, "upstream": "app",
          "buffer_request": True, "buffer_limit": "64KiB"},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        admin={"listen": "127.0.0.1:0"},
        limits={"max_body_bytes": "1MiB", "max_header_bytes": "8KiB"})
    return module_procs.proxy(config), up


def upload(port, path, headers=None, body=UPLOAD):
    """http.client sends the whole body, then reads the response (it never looks for an early
    one): the status, or the name of the error it got instead."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        r = conn.getresponse()
        r.read()
        return r.status
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/echo", "/small/echo"])
def test_an_upload_over_the_limit_gets_its_413_while_still_sending(env, path):
    """Content-Length over max_body_bytes (/echo) or over the route's buffer_limit (/small/)."""
    proxy, up = env
    outcomes = [upload(proxy.port, path) for _ in range(20)]
    assert outcomes == [413] * 20, outcomes
    assert up.stats()["paths"].get(path, 0) == 0, "a refused upload reached the upstream"


def test_a_chunked_upload_that_grows_over_the_limit_gets_its_413(env):
    """No Content-Length: the limit is found mid-body, after the upstream has part of it."""
    proxy, _ = env

    def pieces():
        for _ in range(50):
            yield b"c" * MiB

    # An iterable body without a length: http.client sends it chunked.
    outcomes = [upload(proxy.port, "/echo", body=pieces()) for _ in range(5)]
    assert outcomes == [413] * 5, outcomes


def test_a_head_over_the_limit_gets_its_431_while_the_body_is_still_coming(env):
    proxy, _ = env
    big = {"X-Big": "h" * (256 * 1024)}
    outcomes = [upload(proxy.port, "/echo", headers=big) for _ in range(20)]
    assert outcomes == [431] * 20, outcomes


def test_a_lingering_connection_holds_nothing_and_closes_when_the_client_goes_quiet(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        t0 = time.monotonic()
        c.send(b"POST /one/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n"
               + b"q" * 100_000)
        r = c.read_response(timeout=5)
        assert_proxy_error(r, 413, route="one")
        assert r.header("connection") == "close"
        # The answer is followed by the proxy's FIN (half-close): EOF here, while the proxy still
        # reads what this client sends.
        assert c.wait_closed(timeout=2) == b""
        assert c.try_send(b"q" * 100_000), "the proxy stopped reading during the linger"
        # It holds no slot and no upstream connection: the route's one slot serves others.
        assert metric(proxy, "loopguard_route_in_flight", route="one") == 0
        for i in range(3):
            assert http_request(proxy.port, "GET", f"/one/echo?i={i}", timeout=3).status == 200
        # Quiet for kLingerQuietMs: the proxy closes its side too.
        wait_until(lambda: metric(proxy, "loopguard_connections", side="client") == 0,
                   LINGER_QUIET + 3, interval=0.1, desc="the lingering connection to close")
        closed_after = time.monotonic() - t0
    assert LINGER_QUIET - 0.5 <= closed_after <= LINGER_QUIET + 3, \
        f"lingering connection closed after {closed_after:.1f}s"


def test_a_client_still_sending_keeps_its_lingering_connection_until_it_goes_quiet(env):
    """Each read restarts the quiet period: a client still sending past kLingerQuietMs is not
    cut off (that would be the reset lingering exists to avoid). About 12 s."""
    proxy, _ = env
    with RawConn(proxy.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\nabc")
        assert_proxy_error(c.read_response(timeout=5), 413, route="default")
        t0 = time.monotonic()
        while time.monotonic() - t0 < LINGER_QUIET + 2:
            assert c.try_send(b"q" * 1000), "the lingering connection was cut while sending"
            time.sleep(0.5)  # the client's pace (what is tested is the proxy's patience)
        assert metric(proxy, "loopguard_connections", side="client") == 1
        last_sent = time.monotonic()
        wait_until(lambda: metric(proxy, "loopguard_connections", side="client") == 0,
                   LINGER_QUIET + 3, interval=0.1, desc="the lingering connection to close")
        quiet_for = time.monotonic() - last_sent
    assert LINGER_QUIET - 0.5 <= quiet_for <= LINGER_QUIET + 3, f"closed after {quiet_for:.1f}s"


def test_a_lingering_connection_closes_as_soon_as_the_client_does(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\nabc")
        assert_proxy_error(c.read_response(timeout=5), 413, route="default")
        t0 = time.monotonic()
    wait_until(lambda: metric(proxy, "loopguard_connections", side="client") == 0, 2,
               desc="the lingering connection to close after the client's")
    assert time.monotonic() - t0 < 1.0
