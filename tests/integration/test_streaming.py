"""Streaming with backpressure: a 1 GiB response to a slow reader keeps the proxy's memory
bounded; slow uploads are not cut by the header or idle timeouts; chunks are forwarded as they
come rather than after the whole response."""
import os
import socket
import threading
import time

import pytest

from harness import (GiB, KiB, MiB, RawConn, build_request, http_request, maps_library,
                     pattern_view, rss_bytes, sha256, simple_config)

RSS_LIMIT = 64 * MiB


@pytest.fixture
def env(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(simple_config(up, timeouts={"header": "1s", "idle": "1s"}))
    return proxy, up


class RssSampler(threading.Thread):
    def __init__(self, pid, interval=0.02):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples = []
        self.stop_event = threading.Event()
        self.start()

    def run(self):
        while not self.stop_event.is_set():
            rss = rss_bytes(self.pid)
            if rss is not None:
                self.samples.append(rss)
            self.stop_event.wait(self.interval)

    def stop(self):
        self.stop_event.set()
        self.join(5)
        return max(self.samples) if self.samples else None


def test_1gib_response_to_slow_reader_keeps_proxy_rss_bounded(env):
    proxy, up = env
    total = 1 * GiB
    asan = maps_library(proxy.pid, "libasan")
    baseline = proxy.rss()
    sampler = RssSampler(proxy.pid)
    c = RawConn(proxy.port, timeout=10)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * KiB)
    got = 0
    mismatch_at = None
    t0 = time.monotonic()
    try:
        c.send(build_request("GET", f"/stream?n={total}&chunk=262144"))
        _, status, _, headers = c.read_head(timeout=10)
        assert status == 200
        lengths = [v for n, v in headers if n.lower() == "content-length"]
        assert lengths == [str(total)], headers
        early = bytes(c.buf)  # body bytes that came with the head
        c.buf.clear()
        if early != pattern_view(0, len(early)):
            mismatch_at = 0
        got = len(early)
        buf = bytearray(1 * MiB)
        view = memoryview(buf)
        c.sock.settimeout(10)
        slow_until = time.monotonic() + 3.0
        deadline = time.monotonic() + 60
        while got < total:
            assert time.monotonic() < deadline, f"only {got} of {total} bytes after 60s"
            if time.monotonic() < slow_until:
                n = c.sock.recv_into(view[: 64 * KiB])
                time.sleep(0.005)  # the slow phase: ~13 MB/s while the upstream pushes as fast as it can
            else:
                n = c.sock.recv_into(view, min(len(buf), total - got))
            if n == 0:
                break
            if mismatch_at is None and bytes(view[:n]) != pattern_view(got, n):
                mismatch_at = got
            got += n
    finally:
        peak = sampler.stop()
        c.close()
    elapsed = time.monotonic() - t0
    assert got == total, f"received {got} of {total} bytes"
    assert mismatch_at is None, f"corrupted body from byte {mismatch_at}"
    print(f"1 GiB in {elapsed:.1f}s; proxy RSS baseline {baseline / MiB:.1f} MiB, "
          f"peak {peak / MiB:.1f} MiB over {len(sampler.samples)} samples")
    if asan:
        # AddressSanitizer's shadow memory and quarantine make RSS meaningless as a bound.
        assert peak - baseline < 256 * MiB, f"RSS grew {(peak - baseline) / MiB:.0f} MiB under ASan"
    else:
        assert peak < RSS_LIMIT, f"proxy RSS peaked at {peak / MiB:.1f} MiB (limit 64 MiB)"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_slow_upload_longer_than_header_and_idle_timeouts_arrives_intact(env, chunked):
    proxy, _ = env
    pieces = [os.urandom(32 * KiB) for _ in range(25)]  # 800 KiB over ~2.5 s (timeouts: 1s)
    body = b"".join(pieces)
    with RawConn(proxy.port) as c:
        if chunked:
            c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")]))
        else:
            c.send(build_request("POST", "/echo", [("Content-Length", str(len(body)))]))
        for p in pieces:
            time.sleep(0.1)  # the slow client itself: a gap between pieces, not awaiting anything
            c.send(b"%x\r\n%s\r\n" % (len(p), p) if chunked else p)
        if chunked:
            c.send(b"0\r\n\r\n")
        r = c.read_response(timeout=10)
    assert r.status == 200, r
    e = r.json()
    assert e["body_length"] == len(body) and e["body_sha256"] == sha256(body)


def test_response_chunks_are_forwarded_as_they_arrive(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/drip?n=4&ms=500"))
        c.read_until(b"chunk-0;", timeout=3)
        first = time.monotonic() - t0
        c.read_until(b"chunk-3;", timeout=5)
        last = time.monotonic() - t0
    assert first < 0.4, f"first chunk after {first:.2f}s: the response was buffered"
    assert last >= 1.4, f"last chunk after {last:.2f}s: the fake upstream did not drip"


def test_clients_hanging_up_mid_response_do_not_hurt_the_proxy(env):
    """Writing to a client that has gone (EPIPE / ECONNRESET) must only end that exchange: the
    process survives (SIGPIPE ignored) and keeps accepting."""
    proxy, _ = env
    for i in range(20):
        c = RawConn(proxy.port)
        c.send(build_request("GET", "/stream?n=104857600"))
        c.read_head()
        c.read_exact(1000)
        c.hang_up()
        try:
            r = http_request(proxy.port, "GET", f"/echo?after-hangup={i}", timeout=5)
        except OSError as e:
            try:
                rc = proxy.proc.wait(1)
            except Exception:
                rc = "none, still running"
            pytest.fail(f"after hang-up {i}: {e!r}; proxy exit code: {rc} (-13 = killed by SIGPIPE)")
        assert r.status == 200, r
    assert proxy.running()
