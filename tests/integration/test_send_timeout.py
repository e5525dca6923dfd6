"""timeouts.send (nginx's send_timeout): a write to the client that makes no progress for that
long ends the exchange. Without it a client that stops reading its response keeps the route
slot and the upstream connection (reads from the upstream stop while the proxy cannot write to
the client) for as long as it keeps the connection open.

The responses are larger than what the kernel buffers for a connection whose peer does not read
(see test_stalled_readers.py), so the proxy really is left with a write it cannot finish."""
import socket
import time

import pytest

from harness import KiB, MiB, http_request, metric, proxy_config, wait_until

RESPONSE = 24 * MiB


@pytest.fixture
def env(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config(
        {"app": {"endpoints": [up.address]}},
        [{"name": "one", "match": {"prefix": "/"}, "upstream": "app",
          "limits": {"max_in_flight": 1, "max_queue": 8, "queue_timeout": "60s"}}],
        admin={"listen": "127.0.0.1:0"}, timeouts={"send": "1s"}))
    return procs, proxy, up


def client_with_small_window(port, request, window=4096):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)
    s.connect(("127.0.0.1", port))
    s.sendall(request)
    return s


def read_to_eof(s, timeout):
    """Everything the socket still delivers, until EOF (or a reset); fails past the deadline."""
    s.settimeout(timeout)
    got = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(1 << 20)
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += len(chunk)
    raise AssertionError(f"no EOF within {timeout}s ({got} bytes read)")


def test_a_client_that_stops_reading_frees_its_slot_and_upstream_connection(env):
    procs, proxy, up = env
    stalled = client_with_small_window(
        proxy.port, f"GET /bytes?n={RESPONSE} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    procs.on_cleanup(stalled.close)
    wait_until(lambda: metric(proxy, "loopguard_route_in_flight", route="one") == 1, 10,
               desc="the large response to hold the route's only slot")

    # The next request waits for that slot, and gets it once the stalled write is given up.
    r = http_request(proxy.port, "GET", "/echo", timeout=60)
    assert r.status == 200, r
    assert r.elapsed < 20, r.elapsed  # within one to two send timeouts, with a shared machine's slack
    assert metric(proxy, "loopguard_client_timeouts_total", route="one", kind="send") == 1
    assert metric(proxy, "loopguard_requests_total", route="one", code=503) is None

    # The stalled client's connection was closed: what it can still read ends short of the body.
    assert read_to_eof(stalled, 20) < RESPONSE
    # The cut response's upstream connection is closed (the /echo one stays pooled).
    wait_until(lambda: up.stats()["open_connections"] <= 1, 10,
               desc="the cut response's upstream connection to close")
    assert metric(proxy, "loopguard_connections", side="upstream") <= 1
    line = proxy.wait_for_line(r"timeouts\.send", stream="stdout", timeout=10)
    assert "status=200" in line, line  # the access log keeps the status sent


def test_a_pipelining_client_that_reads_nothing_is_cut(env):
    """A client that pipelines many requests and reads nothing: the answers queue up in its
    connection, and the one whose write stalls is given up after timeouts.send."""
    procs, proxy, up = env
    request = b"GET /bytes?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (4 * MiB)
    stalled = client_with_small_window(proxy.port, request * 8)
    procs.on_cleanup(stalled.close)
    wait_until(lambda: metric(proxy, "loopguard_client_timeouts_total", route="one",
                              kind="send") == 1, 20, desc="the stalled write to be given up")
    wait_until(lambda: metric(proxy, "loopguard_connections", side="client") == 0, 10,
               desc="the stalled connection to close")
    assert metric(proxy, "loopguard_route_in_flight", route="one") == 0


def test_a_slow_reader_that_keeps_reading_is_never_cut(env):
    """Reading a little at a time, taking several send timeouts in all: progress, not total
    time, is what counts. The body is larger than what the kernel buffers, so the proxy's
    writes do wait on this reader; and the reader is slow enough that the proxy's own queue
    often stays put for longer than timeouts.send while the kernel's drains (what the timer
    must see as progress)."""
    procs, proxy, up = env
    size = 8 * MiB
    s = client_with_small_window(
        proxy.port, f"GET /bytes?n={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode(), window=64 * KiB)
    procs.on_cleanup(s.close)
    s.settimeout(30)
    data = bytearray()
    t0 = time.monotonic()
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    got = len(body)
    while got < size:
        chunk = s.recv(16 * KiB)
        assert chunk, f"cut after {got} of {size} bytes"
        got += len(chunk)
        time.sleep(0.005)  # the pace of the reader, not a wait for an event
    elapsed = time.monotonic() - t0
    assert elapsed > 2, f"not a slow reader: {elapsed:.1f}s"
    assert metric(proxy, "loopguard_client_timeouts_total", route="one", kind="send") == 0
