"""What the proxy holds for clients that stop reading (issue 8, item 6: a client that stopped
reading a large response pinned 256-350 KiB in the proxy; 300 of them took 97 MB, 300
pipelining clients that never read 112 MB). Large reads are used only while the client's kernel
has room for them, so a stalled connection holds a small block, and what it held goes back to
the pool, and from there to the kernel, when it ends.

The responses are larger than what the kernel itself buffers for a connection whose peer does
not read (here up to 4 MiB of unsent data in the proxy's socket to the client, and as much again
on the upstream side), so the proxy really is left holding bytes it cannot send. That is also
why there are 50 readers, not more: each costs the kernel about 8 MiB while it stalls.

Small read blocks fill often, so the last test checks that reading resumes by itself once a full
block has been consumed, for a reader that consumes and never asks again (a pool draining the
answer to a request its client abandoned)."""
import socket
import time

import pytest

from harness import http_request, maps_library, metric, proxy_config, wait_until, KiB, MiB
from offload_support import config_text, pool_def, pool_route, wait_ready

READERS = 50
RESPONSE = 12 * MiB
PER_READER = 96 * KiB  # the bound asserted; measured: 25-35 KiB (one 32 KiB block, state)


@pytest.fixture
def env(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config(
        {"app": {"endpoints": [up.address]}},
        [{"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        admin={"listen": "127.0.0.1:0"}, limits={"max_connections": 1000}))
    return proxy, up


def stalled_client(port, request):
    """A client with a tiny receive buffer that sends `request` and never reads."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(request)
    return s


def settled_rss(proxy, timeout=30):
    """The proxy's RSS once it stops changing (two samples 0.5 s apart within 1%): the moment
    every stalled connection has filled the kernel's buffers and the proxy has stopped."""
    last = [proxy.rss()]

    def steady():
        time.sleep(0.5)  # the sampling interval of the poll, not a wait for an event
        now = proxy.rss()
        stable = abs(now - last[0]) <= last[0] // 100
        last[0] = now
        return stable

    wait_until(steady, timeout, interval=0, desc="the proxy's RSS to settle")
    return last[0]


def warm_up(proxy):
    """One full transfer per connection slot the test will use, so the pools and the heap the
    proxy needs exist before the measurement (each stalled connection then costs only what it
    holds)."""
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        for _ in range(3):
            s.sendall(f"GET /bytes?n={RESPONSE} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            got = 0
            while got < RESPONSE:
                got += len(s.recv(1 << 20))


def assert_little_pinned(proxy, up, request, clients, who):
    """`clients` stalled clients that sent `request` each: the proxy's RSS grows by at most
    PER_READER for each, and falls back once they are gone."""
    warm_up(proxy)
    before = settled_rss(proxy)
    up.reset_stats()
    conns = [stalled_client(proxy.port, request) for _ in range(clients)]
    try:
        up.wait_stats(lambda s: s["requests"] == clients, timeout=20,
                      desc="every stalled client's first request to reach the upstream")
        during = settled_rss(proxy)
    finally:
        for s in conns:
            s.close()
    wait_until(lambda: metric(proxy, "loopguard_connections", side="client") == 0, 20,
               desc="the stalled connections to close")
    after = settled_rss(proxy)
    if maps_library(proxy.pid, "libasan"):
        return  # RSS means nothing under ASan (shadow memory, quarantine): behaviour only
    rss = f"RSS {before / MiB:.1f} -> {during / MiB:.1f} -> {after / MiB:.1f} MiB"
    per_client = (during - before) / clients
    assert per_client <= PER_READER, \
        f"{per_client / KiB:.0f} KiB per {who} ({rss} for {clients})"
    # Given back: the blocks beyond the pool's short free lists are unmapped.
    assert after - before <= 12 * MiB, rss


def test_clients_that_stop_reading_a_large_response_pin_little(env):
    proxy, up = env
    assert_little_pinned(proxy, up, f"GET /bytes?n={RESPONSE} HTTP/1.1\r\nHost: t\r\n\r\n".encode(),
                         READERS, "stalled reader")


def test_pipelining_clients_that_never_read_pin_little(env):
    """Each sends 20 requests at once and reads nothing: the responses are answered one at a
    time, in order, so only the first is under way and the rest wait unread, costing a small
    block of input at most. (Only the first request of each reaches the upstream.)"""
    proxy, up = env
    request = f"GET /bytes?n={RESPONSE} HTTP/1.1\r\nHost: t\r\n\r\n".encode() * 20
    assert_little_pinned(proxy, up, request, READERS // 2, "never-reading pipelining client")


# ---- reads resume once a full block is consumed -----------------------------------------------------
def test_a_worker_whose_client_left_before_its_answer_is_freed_at_once(procs):
    """The client of a pool route hangs up while the worker is still computing its 16 MiB
    answer. The pool drains (and drops) that answer before the worker takes the next request:
    block after block, each read resuming by itself once the previous one was dropped."""
    proxy = procs.proxy(config_text(
        {"cpu": pool_def(workers=1, request_timeout="30s")},
        [pool_route(queue_timeout="20s")], admin={"listen": "127.0.0.1:0"}))
    wait_ready(proxy, 1)
    c = stalled_client(proxy.port, b"GET /big?mb=16&ms=300 HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_until(lambda: metric(proxy, "loopguard_route_in_flight", route="cpu") == 1, 5,
               desc="the worker to take the request")
    c.close()  # within the worker's 300 ms: before any byte of its answer
    wait_until(lambda: metric(proxy, "loopguard_route_in_flight", route="cpu") == 0, 5,
               desc="the exchange to give up")
    r = http_request(proxy.port, "GET", "/work?ms=1", timeout=25)
    assert r.status == 200, r
    assert r.elapsed < 5, f"the worker was freed only after {r.elapsed:.1f}s"
