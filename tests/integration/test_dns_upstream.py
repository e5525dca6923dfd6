"""Upstream endpoints given by DNS name: resolved with uv_getaddrinfo at start and again every
`resolve_every`, requests keep flowing across re-resolutions, and a name that does not resolve
gives 502 (not a hang)."""
import socket
import time

import pytest

from harness import http_request, proxy_config


def test_dns_name_endpoint_is_resolved_and_re_resolved(procs):
    try:
        socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    except OSError as e:  # e.g. a bare chroot without /etc/hosts
        pytest.skip(f"this machine cannot resolve localhost: {e}")
    up = procs.upstream("app")
    config = proxy_config(
        {"app": {"endpoints": [f"localhost:{up.port}"], "resolve_every": "200ms",
                 "connect_timeout": "1s"}},
        [{"name": "default", "match": {"prefix": "/"}, "upstream": "app"}])
    proxy = procs.proxy(config)
    deadline = time.monotonic() + 1.5  # several re-resolutions happen meanwhile
    served = 0
    while time.monotonic() < deadline:
        r = http_request(proxy.port, "GET", "/echo?n=%d" % served, timeout=5)
        assert r.status == 200, r
        served += 1
        time.sleep(0.05)
    assert served >= 10
    assert up.stats()["requests"] >= served


def test_unresolvable_name_gives_502_quickly(procs):
    config = proxy_config(
        {"app": {"endpoints": ["no-such-host.invalid:80"], "resolve_every": "1s"}},
        [{"name": "default", "match": {"prefix": "/"}, "upstream": "app"}])
    proxy = procs.proxy(config)
    t0 = time.monotonic()
    r = http_request(proxy.port, "GET", "/echo", timeout=10)
    assert r.status == 502, r
    assert r.json()["route"] == "default"
    assert time.monotonic() - t0 < 5
