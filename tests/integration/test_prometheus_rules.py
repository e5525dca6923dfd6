"""deploy/prometheus/loopguard-rules.yaml and deploy/grafana/loopguard.json against a real
Prometheus (Debian's `prometheus`, started here on a free port, scraping every second) that
scrapes a running loopguard under traffic:

- `promtool check rules` passes, and `promtool test rules` (loopguard-rules.test.yaml: every alert
  on synthetic series, what must fire and what must not) passes; loopguard's /metrics passes
  `promtool check metrics`;
- every dashboard query and every alert expression, evaluated through the HTTP API, is valid and
  returns series. An alert expression is evaluated with its comparisons in `bool` form (so it
  returns a series whatever the values). The loop-block advisor's series need an endpoint that
  blocks an app's loop: a FastAPI app (apps/advisor_app.py) gets a blocker and a waiter, and the
  env waits for the advisor's verdict before the queries run. A query that is invalid, or whose
  metric loopguard does not export, or that returns nothing, fails;
- alerts are driven to firing by a pool that crash-loops (LoopguardWorkersCrashLooping,
  LoopguardPoolNoReadyWorker, and LoopguardRouteRefusing for its route), and stay silent for a
  healthy pool and route. The rules are loaded from a copy whose `for:` durations are 1 s: the
  real ones (1-10 min) only keep a blip from paging anyone, which is Prometheus's own logic; the
  expressions and labels are the shipped ones.
"""
import json
import os
import re
import subprocess

import pytest
import yaml

import advisor_support as adv
from harness import http_request, wait_until
from load_support import Load, mixed_config
from offload_support import pool_def, pool_route, wait_ready
import prometheus_support as ps

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(ROOT, "deploy", "prometheus", "loopguard-rules.yaml")
RULE_TESTS = os.path.join(ROOT, "deploy", "prometheus", "loopguard-rules.test.yaml")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "loopguard.json")

pytestmark = pytest.mark.skipif(not ps.available(), reason="needs Debian's prometheus and promtool")

# What Grafana would put in place of the dashboard's variables here: every job and instance, and a
# rate window of 5 scrape intervals (Grafana's $__rate_interval is at least 4).
GRAFANA_VARS = {"$__rate_interval": "5s", "$__interval": "1s", "$__range": "1m", "$job": ".*",
                "$instance": ".*"}


def dashboard_queries():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append(pytest.param(target["expr"], id=f"{panel['title']}/{target['refId']}"))
    return out


def alert_rules():
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def grafana_expand(expr):
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    return expr


@pytest.fixture(scope="module")
def env(module_procs):
    upstream = module_procs.upstream("app")
    # An async app with an endpoint that computes on its loop (the advisor's metrics) and one
    # that waits.
    loop_app = adv.fastapi_app().start()
    module_procs.on_cleanup(loop_app.stop)
    advised = [{"name": "advised", "match": {"regex": "^/(cpu/loop|io/sleep)$"}, "upstream": "loop_app"}]
    # Workers that exit at boot: a crash loop, and never a ready worker.
    cfg = mixed_config(upstream, pools={"broken": pool_def(["--boot-exit", "3"], workers=1)},
                       routes=[pool_route("broken", "/broken/", pool="broken")],
                       upstreams={"loop_app": {"endpoints": [f"127.0.0.1:{loop_app.port}"]}},
                       first_routes=advised)
    proxy = module_procs.proxy(cfg)
    # 3/s x 8 ms: flagged, but under the 5 % of LoopguardEndpointBlockingLoop (no alert here).
    advised_traffic = adv.Traffic(proxy.port, {"GET /cpu/loop?ms=8": 3, "GET /io/sleep": 30}).start()
    module_procs.on_cleanup(advised_traffic.stop)
    wait_ready(proxy, 2, pool="cpu")
    # The healthy routes get no more than they can take (no refusals there); the broken one
    # refuses everything at once (no_workers).
    traffic = Load(proxy.port)
    traffic.set_clients("/cpu/sleep?ms=60", 2).set_clients("/api/delay?ms=5", 2)
    traffic.set_clients("/broken/sleep?ms=1", 1)
    module_procs.on_cleanup(traffic.stop)
    # The rules as shipped, `for:` shortened (see the module docstring).
    with open(RULES) as f:
        rules = f.read()
    fast = re.sub(r"^(\s+for: )\S+$", r"\g<1>1s", rules, flags=re.M)
    assert fast.count("for: 1s") == len(alert_rules())
    fast_path = module_procs.path("rules-fast-for.yaml")
    with open(fast_path, "w") as f:
        f.write(fast)
    prom = ps.Prometheus(module_procs.workdir, [f"127.0.0.1:{proxy.admin_port}"], [fast_path]).start()
    module_procs.on_cleanup(prom.stop)
    # Enough scrapes under traffic for a 5 s rate window, and of the blocking endpoint's series.
    prom.wait_for_samples("loopguard_requests_total", 8)
    wait_until(lambda: adv.by_path(adv.advice(proxy.admin_port)).get("GET /cpu/loop", {})
               .get("verdict") == "blocks_loop", 40, interval=0.5, desc="GET /cpu/loop flagged")
    prom.wait_for_samples("loopguard_endpoint_blocking_seconds_total", 3)
    r = http_request(proxy.admin_port, "GET", "/metrics")
    assert r.status == 200
    text = r.body.decode()
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    yield {"proxy": proxy, "prom": prom, "exported": exported, "metrics_text": text}


# Metrics of the SPEC that features being built in parallel will export. A query that reads one
# of these while loopguard does not export it yet is skipped; any other metric it cannot find is
# a mistake in the query (a typo reads as "no series" and fails). Empty: everything is exported.
PENDING = {}


def exported_name(name, exported):
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in exported or base in exported


def check_returns_series(env, expr):
    missing = sorted(n for n in ps.metric_names(expr) if not exported_name(n, env["exported"]))
    try:
        result = env["prom"].query(expr)
    except ps.PrometheusError as e:
        pytest.fail(f"invalid query {expr}: {e}", pytrace=False)
    unknown = [n for n in missing if n not in PENDING]
    assert not unknown, f"{expr} reads {unknown}, which loopguard does not export"
    if missing:
        # Not a broken query (Prometheus parsed and ran it): its metric is not there to read.
        assert not result, f"{expr} returned series although {missing} is not exported"
        pytest.skip(f"metric not exported yet: {', '.join(missing)} (coming with "
                    f"{', '.join(sorted({PENDING[n] for n in missing}))}; the query is valid and "
                    "returns series once loopguard exports it)")
    assert result, f"{expr} returned no series"
    return result


# ---- promtool ------------------------------------------------------------------------------------
def test_promtool_check_rules():
    r = ps.promtool("check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in r.stdout


def test_promtool_rule_unit_tests():
    r = ps.promtool("test", "rules", RULE_TESTS)
    assert r.returncode == 0, r.stdout + r.stderr
    # Every alert has a unit test.
    with open(RULE_TESTS) as f:
        tested = set(re.findall(r"alertname: (\w+)", f.read()))
    assert {r["alert"] for r in alert_rules()} <= tested


def test_loopguard_metrics_pass_promtool_lint(env):
    r = subprocess.run([ps.PROMTOOL, "check", "metrics"], input=env["metrics_text"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_severity_summary_and_runbook():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert "for" in rule, f"{rule['alert']}: no `for:` (a single bad scrape would page)"


# ---- every query returns series ------------------------------------------------------------------
@pytest.mark.parametrize("expr", dashboard_queries())
def test_dashboard_query_returns_series(env, expr):
    check_returns_series(env, grafana_expand(expr))


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_expression_returns_series(env, rule):
    bool_form = ps.as_bool_comparisons(rule["expr"])
    assert bool_form != rule["expr"], "an alert expression should compare with a threshold"
    check_returns_series(env, bool_form)


# ---- alerts fire, for the broken pool only --------------------------------------------------------
def firing(prom, name):
    return [a["labels"] for a in prom.alerts() if a["labels"]["alertname"] == name
            and a["state"] == "firing"]


@pytest.mark.parametrize("alert, labels", [
    ("LoopguardWorkersCrashLooping", {"pool": "broken"}),
    ("LoopguardPoolNoReadyWorker", {"pool": "broken"}),
    ("LoopguardRouteRefusing", {"route": "broken"}),
])
def test_alert_fires_for_the_broken_pool_only(env, alert, labels):
    prom = env["prom"]
    got = wait_until(lambda: firing(prom, alert), 30, 0.25, desc=f"{alert} firing")
    assert len(got) == 1, got
    for k, v in labels.items():
        assert got[0][k] == v, got
    assert got[0]["instance"] == f"127.0.0.1:{env['proxy'].admin_port}"
    assert got[0]["severity"] in ("warning", "critical")
    # The healthy pool and route, under the same traffic, raise nothing.
    assert not [a for a in prom.alerts() if a["labels"].get("pool") == "cpu"
                or a["labels"].get("route") in ("cpu", "api")], prom.alerts()


def test_no_other_alert_fires(env):
    prom = env["prom"]
    wait_until(lambda: firing(prom, "LoopguardPoolNoReadyWorker"), 30, 0.25, desc="alerts evaluated")
    names = {a["labels"]["alertname"] for a in prom.alerts()}
    assert names <= {"LoopguardWorkersCrashLooping", "LoopguardPoolNoReadyWorker",
                     "LoopguardRouteRefusing"}, names
