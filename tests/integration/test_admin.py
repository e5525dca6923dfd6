"""The admin listener: /healthz, /readyz, /metrics (checked with a real Prometheus parser),
/config, and that it answers while every route is saturated."""
import json
import signal
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import Pending, http_request, proxy_config, wait_until

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
    time.sleep(0.2)
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
