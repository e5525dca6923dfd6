"""Self-test of the test tooling (fake_upstream.py and harness.py), without loopguard:

    cd tests/integration && /usr/bin/python3 -m pytest -q -p no:cacheprovider selftest_fake_upstream.py

Not named test_*.py, so ctest does not register it and it never needs the binary.
"""
import hashlib
import os
import socket
import time

import pytest

import harness
from harness import (Background, Blackhole, DeadPort, RawConn, build_request, chunked_body,
                     http_request, pattern_bytes)


@pytest.fixture
def reg(request):
    r = harness.ProcessRegistry(request.node.name)
    yield r
    r.cleanup()


@pytest.fixture
def up(reg):
    return reg.upstream("selftest")


def test_echo_reports_method_headers_in_order_and_body_hash(up):
    body = os.urandom(100_000)
    r = http_request(up.port, "POST", "/x/echo?a=1&b=2", body=body,
                     headers={"X-B": "2", "X-A": "1"})
    assert r.status == 200
    assert r.header("x-upstream") == "selftest"
    e = r.json()
    assert e["method"] == "POST" and e["path"] == "/x/echo" and e["query"] == "a=1&b=2"
    names = [n for n, _ in e["headers"]]
    assert names.index("X-B") < names.index("X-A")
    assert e["body_length"] == len(body)
    assert e["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert isinstance(e["peer_port"], int)


def test_chunked_upload_with_trailers_and_extensions(up):
    pieces = [os.urandom(n) for n in (1, 4096, 70000, 3)]
    raw = bytearray(build_request("POST", "/echo", {"Transfer-Encoding": "chunked"}))
    raw += b"1;ext=1\r\n" + pieces[0] + b"\r\n"
    raw += chunked_body(pieces[1:], trailers=[("X-Trailer", "t1")])
    with RawConn(up.port) as c:
        c.send(bytes(raw))
        r = c.read_response()
    e = r.json()
    assert e["chunked"] is True
    assert e["body_length"] == sum(map(len, pieces))
    assert e["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert e["trailers"] == [["X-Trailer", "t1"]]


def test_keepalive_requests_share_one_connection_and_stats_count_it(up):
    up.reset_stats()
    with RawConn(up.port) as c:
        ids = {c.request("GET", "/echo").json()["conn_id"] for _ in range(10)}
    assert len(ids) == 1
    s = up.stats()
    assert s["requests"] == 10 and s["connections"] == 1 and s["paths"] == {"/echo": 10}


def test_pipelined_requests_answered_in_order(up):
    with RawConn(up.port) as c:
        c.send(build_request("GET", "/delay?ms=200&id=1") + build_request("GET", "/echo?id=2")
               + build_request("HEAD", "/bytes?n=10") + build_request("GET", "/status?code=204"))
        assert c.read_response().json()["query"] == "ms=200&id=1"
        assert c.read_response().json()["query"] == "id=2"
        h = c.read_response(method="HEAD")
        assert h.status == 200 and h.header("content-length") == "10" and h.body == b""
        assert c.read_response().status == 204


def test_bytes_content_length_and_chunked_match_pattern(up):
    for q in ("n=3000000", "n=3000000&chunked=1&chunk=7777"):
        r = http_request(up.port, "GET", "/bytes?" + q)
        assert r.body == pattern_bytes(0, 3000000)
        assert ("chunked" in (r.header("transfer-encoding") or "")) == ("chunked=1" in q)


def test_http10_gets_close_delimited_body_for_chunked_request(up):
    with RawConn(up.port) as c:
        c.send(b"GET /bytes?n=5000&chunked=1 HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.close_delimited and r.body == pattern_bytes(0, 5000)


def test_expect_100_continue(up):
    with RawConn(up.port) as c:
        c.send(build_request("POST", "/echo", {"Expect": "100-continue", "Content-Length": "5"}))
        assert c.read_response().status == 100
        c.send(b"hello")
        assert c.read_response().json()["body_length"] == 5
    assert up.stats()["expect_100"] == 1


def test_peak_in_flight_is_exact(up):
    up.reset_stats()
    jobs = [Background(http_request, up.port, "GET", "/delay?ms=1500") for _ in range(5)]
    up.wait_stats(lambda s: s["in_flight"] == 5, timeout=3)
    for j in jobs:
        assert j.result().status == 200
    s = up.stats()
    assert s["peak_in_flight"] == 5 and s["in_flight"] == 0
    assert s["group_peaks"] == {"/delay": 5} and s["group_in_flight"] == {"/delay": 0}


def test_group_peaks_count_each_first_path_segment(up):
    up.reset_stats()
    jobs = [Background(http_request, up.port, "GET", p)
            for p in ("/a/delay?ms=1000", "/a/delay?ms=1000", "/b/delay?ms=1000")]
    up.wait_stats(lambda s: s["in_flight"] == 3, timeout=3)
    for j in jobs:
        assert j.result().status == 200
    s = up.stats()
    assert s["group_peaks"] == {"/a": 2, "/b": 1} and s["peak_in_flight"] == 3


def test_delay_notices_peer_hangup(up):
    up.reset_stats()
    c = RawConn(up.port)
    c.send(build_request("GET", "/delay?ms=3000"))
    up.wait_stats(lambda s: s["in_flight"] == 1)
    c.close()
    up.wait_stats(lambda s: s["aborted"] == 1 and s["in_flight"] == 0, timeout=2)


def test_reset_closes_without_response(up):
    with RawConn(up.port) as c:
        c.send(build_request("GET", "/reset"))
        assert c.wait_closed(2) == b""
    with RawConn(up.port) as c:
        c.send(build_request("GET", "/reset?when=partial&n=10"))
        _, status, _, headers = c.read_head()
        assert status == 200
        assert c.wait_closed(2) == pattern_bytes(0, 10)
    assert up.stats()["resets"] == 2


def test_stall_promises_a_body_then_goes_silent_until_the_peer_leaves(up):
    with RawConn(up.port) as c:
        c.send(build_request("GET", "/stall?n=10&cl=1000"))
        _, status, _, headers = c.read_head()
        assert status == 200 and dict(headers)["Content-Length"] == "1000"
        assert c.read_exact(10) == pattern_bytes(0, 10)
        assert c.read_available(0.3) == b"" and not c.eof
    harness.wait_until(lambda: up.stats()["aborted"] == 1, 3, desc="the stall to notice the close")
    with RawConn(up.port) as c:
        c.send(build_request("GET", "/stall?n=1&ms=200"))
        c.read_head()
        assert c.wait_closed(2) == pattern_bytes(0, 1)


def test_hold_never_reads_the_request_body(up):
    with RawConn(up.port) as c:
        sent = 0
        c.sock.setblocking(False)
        c.sock.sendall(b"POST /hold?ms=1000 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:  # the kernel takes a few MiB, then nothing more
            try:
                sent += c.sock.send(b"z" * 65536)
            except BlockingIOError:
                break
        assert sent < 50 * 1024 * 1024, "the body was read"
    assert up.stats()["incomplete_bodies"] == 0


def test_slowhead_and_drip_timing(up):
    with RawConn(up.port) as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/slowhead?ms=300&body_ms=300&n=5"))
        c.read_head()
        t_head = time.monotonic() - t0
        body = c.read_exact(5)
        t_body = time.monotonic() - t0
        assert 0.25 < t_head < 0.5 and 0.55 < t_body < 0.9 and body == pattern_bytes(0, 5)
    with RawConn(up.port) as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/drip?n=3&ms=300"))
        c.read_until(b"chunk-0;")
        assert time.monotonic() - t0 < 0.2
        c.read_until(b"chunk-2;")
        assert time.monotonic() - t0 > 0.55


def test_websocket_upgrade_echoes_raw_bytes(up):
    with RawConn(up.port) as c:
        c.send(build_request("GET", "/ws", {"Upgrade": "websocket", "Connection": "Upgrade",
                                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                            "Sec-WebSocket-Version": "13"}))
        r = c.read_response()
        assert r.status == 101
        assert r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        data = os.urandom(300_000)
        w = Background(c.send, data)
        assert c.read_exact(len(data)) == data
        w.result()
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed(2) == b""
    up.wait_stats(lambda s: s["ws_closed"] == 1)


def test_bad_requests_are_rejected_and_counted(up):
    up.reset_stats()
    for raw in (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  fold\r\n\r\n",
                b"GET /echo HTTP/1.1\r\nHost: x\nX: 1\r\n\r\n",
                b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        with RawConn(up.port) as c:
            c.send(raw)
            assert c.read_response().status == 400
    s = up.stats()
    assert s["bad_requests"] == 4


def test_drop_next_and_keepalive_timeout(up):
    up.reset_stats()
    up.configure(drop_next=1)
    with RawConn(up.port) as c:
        c.send(build_request("GET", "/echo"))
        assert c.wait_closed(2) == b""
    assert up.stats()["dropped"] == 1
    up.configure(keepalive_ms=200)
    with RawConn(up.port) as c:
        assert c.request("GET", "/echo").status == 200
        t0 = time.monotonic()
        assert c.wait_closed(2) == b""
        assert 0.15 < time.monotonic() - t0 < 0.6
    assert up.stats()["idle_closes"] == 1
    up.configure(keepalive_ms=0)


def test_open_connections_track_peer_close(up):
    up.reset_stats()
    c = RawConn(up.port)
    c.request("GET", "/echo")
    assert up.stats()["open_connections"] == 1
    c.close()
    up.wait_stats(lambda s: s["open_connections"] == 0 and s["peer_closes"] == 1)


def test_unix_socket_upstream(reg):
    u = reg.upstream("unixy", unix=True)
    assert u.address.startswith("unix:/tmp/")
    r = http_request(u.target, "GET", "/echo")
    assert r.status == 200 and r.json()["peer_port"] is None
    assert u.stats()["requests"] == 1


def test_dead_port_refuses_and_blackhole_hangs():
    d = DeadPort()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", d.port), timeout=1)
    d.close()
    b = Blackhole()
    assert b.works()
    b.close()


def test_to_yaml_renders_config():
    text = harness.proxy_config(
        {"app": {"endpoints": ["127.0.0.1:1", "unix:/tmp/x"], "balance": "round_robin"}},
        [{"name": "r", "match": {"prefix": "/", "methods": ["GET"]}, "upstream": "app",
          "limits": {"max_in_flight": 2}}],
        timeouts={"header": "1s"})
    assert text == (
        'listen: "127.0.0.1:0"\n'
        'timeouts:\n  header: "1s"\n'
        'upstreams:\n  app:\n    endpoints: ["127.0.0.1:1", "unix:/tmp/x"]\n'
        '    balance: "round_robin"\n'
        'routes:\n  - name: "r"\n    match:\n      prefix: "/"\n      methods: ["GET"]\n'
        '    upstream: "app"\n    limits:\n      max_in_flight: 2\n')


def test_stop_leaves_no_process(reg):
    u = reg.upstream("short")
    pid = u.proc.pid
    u.stop()
    assert not harness.pid_alive(pid)
