"""Upgrade: websocket is tunnelled as raw bytes after the 101; other upgrade tokens (h2c) are not
passed on; a declined upgrade leaves an ordinary HTTP connection."""
import base64
import hashlib
import os
import socket

import pytest

from harness import Background, RawConn, build_request, echo_header, simple_config

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = base64.b64encode(hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                          .digest()).decode()
WS_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", KEY),
              ("Sec-WebSocket-Version", "13")]


@pytest.fixture
def env(procs):
    up = procs.upstream("app")
    return procs.proxy(simple_config(up, timeouts={"idle": "2s"})), up


def open_tunnel(proxy, path="/ws"):
    c = RawConn(proxy.port)
    c.send(build_request("GET", path, WS_HEADERS))
    r = c.read_response(timeout=5)
    assert r.status == 101, r
    assert (r.header("upgrade") or "").lower() == "websocket", r
    assert "upgrade" in (r.header("connection") or "").lower(), r
    assert r.header("sec-websocket-accept") == ACCEPT, r
    return c


def test_websocket_upgrade_tunnels_raw_bytes_both_ways(env):
    proxy, up = env
    c = open_tunnel(proxy)
    try:
        for size in (1, 100, 65536):  # round trips of raw bytes, not even websocket frames
            data = os.urandom(size)
            c.send(data)
            assert c.read_exact(size, timeout=5) == data
        big = os.urandom(4 * 1024 * 1024)  # both directions at once, past every socket buffer
        writer = Background(c.send, big)
        assert c.read_exact(len(big), timeout=20) == big
        writer.result()
        c.sock.shutdown(socket.SHUT_WR)  # client done: the upstream sees EOF and closes
        assert c.wait_closed(5) == b""
    finally:
        c.close()
    up.wait_stats(lambda s: s["ws_closed"] == 1 and s["ws_sessions"] == 1, timeout=3)


def test_websocket_tunnel_outlives_the_idle_timeout(env):
    proxy, _ = env
    c = open_tunnel(proxy)
    try:
        assert c.read_available(3.0) == b"" and not c.eof, "tunnel closed while quiet"
        c.send(b"still there?")
        assert c.read_exact(12, timeout=3) == b"still there?"
    finally:
        c.close()


def test_upstream_closing_the_tunnel_closes_the_client_side(env):
    proxy, _ = env
    c = open_tunnel(proxy, "/ws?close_after=5")
    try:
        c.send(b"hello")
        assert c.read_exact(5, timeout=5) == b"hello"
        assert c.wait_closed(5) == b""
    finally:
        c.close()


def test_client_hanging_up_closes_the_upstream_side(env):
    proxy, up = env
    c = open_tunnel(proxy)
    c.send(b"ping")
    assert c.read_exact(4, timeout=5) == b"ping"
    c.hang_up()
    up.wait_stats(lambda s: s["ws_closed"] == 1, timeout=5, desc="upstream side of the tunnel closed")


def test_declined_upgrade_leaves_a_normal_http_connection(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        c.send(build_request("GET", "/ws?refuse=1", WS_HEADERS))
        r = c.read_response()
        assert r.status == 403, r
        r2 = c.request("GET", "/echo?after=refused")
        assert r2.status == 200 and r2.json()["query"] == "after=refused", r2


def test_h2c_upgrade_is_not_passed_on(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        r = c.request("GET", "/echo", [("Connection", "Upgrade, HTTP2-Settings"),
                                       ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
        assert r.status == 200, r
        e = r.json()
        assert echo_header(e, "upgrade") == [], e["headers"]
        assert echo_header(e, "http2-settings") == [], e["headers"]
        for v in echo_header(e, "connection"):
            assert "upgrade" not in v.lower(), e["headers"]
        # The connection stays HTTP/1.1: reusable, unless the proxy said it would close it.
        if "close" in (r.header("connection") or "").lower():
            assert c.wait_closed(3) == b""
        else:
            assert c.request("GET", "/echo?after=h2c").status == 200
