"""The admin listener: /healthz, /readyz, /metrics (checked with a real Prometheus parser),
/config (pool env values redacted), that it answers while every route is saturated, and who may
use the endpoints that reveal the config or change state: loopback peers only, or whoever
presents the bearer token of admin.token_file (tested from this machine's own non-loopback
address, so the proxy sees a real non-loopback peer)."""
import http.client
import json
import os
import signal
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import Pending, http_request, proxy_config, run_cli, wait_route, wait_until
from offload_support import pool_def

ADMIN = {"listen": "127.0.0.1:0"}


def limited_config(up, **top):
    return proxy_config(
        {"app": {"endpoints": [up.address]}},
        [{"name": "slow", "match": {"prefix": "/slow/"}, "upstream": "app",
          "limits": {"max_in_flight": 1, "max_queue": 1, "queue_timeout": "5s"}},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        admin=ADMIN, **top)


def admin_get(proxy, path, method="GET"):
    return http_request(proxy.admin_port, method, path, timeout=5)


def samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics, name, **labels):
    return metrics.get((name, tuple(sorted(labels.items()))))


def test_health_ready_config_and_unknown_paths(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(limited_config(up))
    assert admin_get(proxy, "/healthz").status == 200
    r = admin_get(proxy, "/readyz")
    assert r.status == 200 and r.body == b"ready\n"
    cfg = admin_get(proxy, "/config")
    assert cfg.status == 200
    assert cfg.header("content-type").startswith("application/json")
    j = json.loads(cfg.body)
    assert [r["name"] for r in j["routes"]] == ["slow", "default"]
    assert j["routes"][0]["limits"]["max_in_flight"] == 1
    assert j["upstreams"]["app"]["endpoints"] == [up.address]
    assert admin_get(proxy, "/nope").status == 404
    assert admin_get(proxy, "/reload").status == 405  # GET: it must be POST
    assert admin_get(proxy, "/metrics", method="POST").status == 405


def test_metrics_parse_and_count_what_happened(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(limited_config(up))
    for _ in range(3):
        assert http_request(proxy.port, "GET", "/echo").status == 200
    assert http_request(proxy.port, "GET", "/status?code=404").status == 404
    # Saturate "slow": 1 in flight, 1 queued, the third refused with queue_full.
    a = Pending(proxy.port, "/slow/delay?ms=800")
    up.wait_stats(lambda s: s["in_flight"] == 1, desc="slow request in flight")
    b = Pending(proxy.port, "/slow/delay?ms=10")
    wait_route(proxy, "slow", queued=1)
    r = http_request(proxy.port, "GET", "/slow/echo")
    assert r.status == 503
    m = samples(admin_get(proxy, "/metrics").body.decode())
    assert value(m, "loopguard_route_in_flight", route="slow") == 1
    assert value(m, "loopguard_route_queue_depth", route="slow") == 1
    assert value(m, "loopguard_route_rejected_total", route="slow", reason="queue_full") == 1
    assert a.result().status == 200 and b.result().status == 200

    text = admin_get(proxy, "/metrics")
    assert text.header("content-type").startswith("text/plain; version=0.0.4")
    body = text.body.decode()
    for family in ["loopguard_requests_total", "loopguard_request_duration_seconds",
                   "loopguard_route_in_flight", "loopguard_route_queue_depth",
                   "loopguard_route_rejected_total", "loopguard_upstream_errors_total",
                   "loopguard_event_loop_lag_seconds", "loopguard_connections",
                   "loopguard_route_queue_wait_seconds"]:
        assert f"# TYPE {family} " in body, family
        assert f"# HELP {family} " in body, family
    m = samples(body)
    assert value(m, "loopguard_requests_total", route="default", code="200") == 3
    assert value(m, "loopguard_requests_total", route="default", code="404") == 1
    assert value(m, "loopguard_requests_total", route="slow", code="200") == 2
    assert value(m, "loopguard_requests_total", route="slow", code="503") == 1
    assert value(m, "loopguard_request_duration_seconds_count", route="default") == 4
    assert value(m, "loopguard_request_duration_seconds_bucket", route="slow", le="60") == 3
    assert value(m, "loopguard_request_duration_seconds_bucket", route="slow", le="0.001") is not None
    assert value(m, "loopguard_route_in_flight", route="slow") == 0
    assert value(m, "loopguard_connections", side="client") >= 0
    assert value(m, "loopguard_event_loop_lag_seconds") is not None


def test_upstream_errors_are_counted_by_kind(procs):
    up = procs.upstream("app")
    config = proxy_config(
        {"app": {"endpoints": [up.address], "response_timeout": "300ms"},
         "dead": {"endpoints": ["127.0.0.1:1"]}},
        [{"name": "dead", "match": {"prefix": "/dead/"}, "upstream": "dead"},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        admin=ADMIN)
    proxy = procs.proxy(config)
    assert http_request(proxy.port, "GET", "/dead/echo").status == 502
    assert http_request(proxy.port, "GET", "/delay?ms=1000").status == 504
    m = samples(admin_get(proxy, "/metrics").body.decode())
    assert value(m, "loopguard_upstream_errors_total", upstream="dead", kind="connect") >= 1
    assert value(m, "loopguard_upstream_errors_total", upstream="app", kind="timeout") == 1


def test_admin_answers_while_routes_are_saturated(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(limited_config(up))
    busy = [Pending(proxy.port, "/slow/delay?ms=1500") for _ in range(2)]
    busy += [Pending(proxy.port, "/delay?ms=1500") for _ in range(20)]
    up.wait_stats(lambda s: s["in_flight"] >= 21, desc="routes saturated")
    t0 = time.monotonic()
    for path in ["/healthz", "/readyz", "/metrics", "/config"]:
        assert admin_get(proxy, path).status == 200
    assert time.monotonic() - t0 < 0.5, "the admin API waited behind saturated routes"
    assert all(p.result().status == 200 for p in busy)


def test_readyz_turns_503_at_sigterm(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(limited_config(up, timeouts={"drain": "5s"}))
    inflight = Pending(proxy.port, "/delay?ms=800")
    up.wait_stats(lambda s: s["in_flight"] == 1, desc="request in flight")
    proxy.send_signal(signal.SIGTERM)
    wait_until(lambda: admin_get(proxy, "/readyz").status == 503, 1.0, desc="readyz 503")
    assert admin_get(proxy, "/healthz").status == 200  # alive while draining
    assert inflight.result().status == 200
    assert proxy.wait_exit(5) == 0


# ---- who may read the config or change state -----------------------------------------------------
def own_non_loopback_address():
    """An IPv4 address of this machine that is not loopback (the admin listener bound there sees
    connections from it as coming from that address), or None."""
    try:
        out = subprocess.run(["ip", "-4", "-j", "addr", "show", "up"], capture_output=True,
                             text=True, timeout=5).stdout
        for link in json.loads(out or "[]"):
            for a in link.get("addr_info", []):
                if a.get("family") == "inet" and not a["local"].startswith("127."):
                    return a["local"]
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return None


@pytest.fixture
def other_ip():
    ip = own_non_loopback_address()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to reach the admin port from")
    return ip


def admin_at(host, proxy, path, method="GET", token=None):
    conn = http.client.HTTPConnection(host, proxy.admin_port, timeout=5)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request(method, path, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def pool_with_secret(up, **admin):
    return proxy_config(
        {"app": {"endpoints": [up.address]}},
        [{"name": "cpu", "match": {"prefix": "/cpu/"}, "pool": "cpu"},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        admin={"listen": "0.0.0.0:0", **admin},
        pools={"cpu": pool_def(workers=1, env={"TEST_CUSTOM": "s3cret-value"})})


def test_config_redacts_pool_env_values_and_keeps_their_keys(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(pool_with_secret(up))
    status, headers, body = admin_at("127.0.0.1", proxy, "/config")
    assert status == 200
    env = json.loads(body)["pools"]["cpu"]["env"]
    assert env["TEST_CUSTOM"] == "<redacted>" and env["PYTHONUNBUFFERED"] == "<redacted>", env
    assert b"s3cret-value" not in body
    # The worker still gets the real value.
    wait_until(lambda: http_request(proxy.port, "GET", "/cpu/env").status == 200, 10,
               desc="a ready worker")
    assert http_request(proxy.port, "GET", "/cpu/env").json()["custom"] == "s3cret-value"


def test_state_and_config_endpoints_answer_loopback_only(procs, other_ip):
    up = procs.upstream("app")
    proxy = procs.proxy(pool_with_secret(up))
    for path, method in [("/config", "GET"), ("/reload", "POST"), ("/advice", "GET"),
                         ("/advice/reset", "POST")]:
        status, headers, body = admin_at(other_ip, proxy, path, method)
        assert status == 403, (path, status, body)
        assert headers["Content-Type"].startswith("application/json")
        assert "loopback" in json.loads(body)["error"]
    assert admin_at("127.0.0.1", proxy, "/config")[0] == 200
    assert admin_at("127.0.0.1", proxy, "/reload", "POST")[0] == 200
    # Probes and the scraper reach the pod IP: those stay open.
    for path in ["/healthz", "/readyz", "/metrics"]:
        assert admin_at(other_ip, proxy, path)[0] in (200, 503), path
    assert admin_at(other_ip, proxy, "/healthz")[0] == 200
    assert admin_at(other_ip, proxy, "/metrics")[0] == 200
    # The log is read by a thread: wait for the line rather than race it.
    wait_until(lambda: any("refused GET /config from " + other_ip in l for l in proxy.stderr_lines),
               10, desc="the refusal logged")


def test_a_token_file_requires_the_bearer_token_from_everyone(procs, other_ip):
    up = procs.upstream("app")
    token_file = procs.path("admin-token")
    with open(token_file, "w") as f:
        f.write("first-token-123\n")                     # a trailing newline is not part of it
    proxy = procs.proxy(pool_with_secret(up, token_file=token_file))
    for host in ("127.0.0.1", other_ip):
        status, headers, body = admin_at(host, proxy, "/config")
        assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer"), body
        assert admin_at(host, proxy, "/config", token="first-token-12")[0] == 403
        assert admin_at(host, proxy, "/config", token="first-token-1234")[0] == 403
        assert admin_at(host, proxy, "/config", token="first-token-123")[0] == 200
        assert admin_at(host, proxy, "/healthz")[0] == 200
    # Rotation: a reload reads the file again.
    with open(token_file, "w") as f:
        f.write("second-token\n")
    status, _, body = admin_at(other_ip, proxy, "/reload", "POST", token="first-token-123")
    assert status == 200, body
    assert admin_at(other_ip, proxy, "/config", token="first-token-123")[0] == 403
    assert admin_at(other_ip, proxy, "/config", token="second-token")[0] == 200
    # An unreadable token file fails the reload and keeps the token that works.
    os.remove(token_file)
    status, _, body = admin_at("127.0.0.1", proxy, "/reload", "POST", token="second-token")
    assert status == 400 and b"admin.token_file" in body, body
    assert admin_at("127.0.0.1", proxy, "/config", token="second-token")[0] == 200


def test_a_missing_token_file_stops_the_start(procs, tmp_path):
    up = procs.upstream("app")
    path = tmp_path / "p.yaml"
    path.write_text(pool_with_secret(up, token_file=str(tmp_path / "nope")))
    r = run_cli(["proxy", "--config", str(path)], timeout=15)
    assert r.returncode == 1, r
    assert "admin.token_file: cannot read" in r.stderr and "nope" in r.stderr, r.stderr
