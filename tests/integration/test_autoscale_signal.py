"""The demand autoscaling of deploy/kubernetes/*/autoscaling/, without a cluster: two loopguard
"pods" behind a stepped load, a real Prometheus scraping them with the labels a PodMonitor gives
(namespace, pod, container), and the exact trigger queries of the sidecar pattern's KEDA
ScaledObject evaluated through its HTTP API. The desired replica count they imply (the HPA's
AverageValue formula with its 10 % tolerance, tests/bench/autoscale_sim.py) must follow the load:
x1 -> x3 load gives ~3x the replicas, and back; at a steady load it must not oscillate.

Known by construction: each pod's route "cpu" has capacity 5 (max_in_flight), and the load is N
closed-loop clients whose requests take 200 ms upstream, so the demand (in flight + queued) is N
all the time: 6 clients (x1) are 6 / 5 = 1.2 pods' worth, desired ceil(1.2 / 0.7) = 2; 18 clients
(x3) are 3.6 pods' worth, desired ceil(3.6 / 0.7) = 6.

The one change to the queries: their rate window [1m] becomes [3s] (scrapes every second here,
every 15 s in a cluster), so a step settles in seconds rather than minutes.
"""
import math
import os
import re
import sys
import time

import pytest
import yaml

from harness import Background, http_request, proxy_config, to_yaml, wait_until
from load_support import Load
from offload_support import pool_def, start_sidecar, wait_ready
import prometheus_support as ps

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KEDA = os.path.join(ROOT, "deploy", "kubernetes", "sidecar", "autoscaling", "keda.yaml")
sys.path.insert(0, os.path.join(ROOT, "tests", "bench"))
from autoscale_sim import Hpa, hpa_recommendation  # noqa: E402


WINDOW_S = 3
WINDOW = f"{WINDOW_S}s"
CAPACITY = 5          # per pod
MAX_QUEUE = 6         # per pod: x3 load queues 4 per pod, x5 overflows
DELAY_MS = 200
PODS = 2


def keda_triggers():
    with open(KEDA) as f:
        so = yaml.safe_load(f)
    out = []
    for t in so["spec"]["triggers"]:
        q = t["metadata"]["query"]
        assert set(re.findall(r"\[(\w+)\]", q)) == {"1m"}, q
        out.append((t["name"], float(t["metadata"]["threshold"]), q.replace("[1m]", f"[{WINDOW}]")))
    return out


@pytest.fixture(scope="module")
def env(module_procs):
    if not ps.available():
        pytest.skip("needs Debian's prometheus and promtool")
    upstream = module_procs.upstream("app")
    cfg = proxy_config({"app": {"endpoints": [upstream.address], "max_idle_connections": 64}},
                       [{"name": "cpu", "match": {"prefix": "/cpu/"}, "upstream": "app",
                         "limits": {"max_in_flight": CAPACITY, "max_queue": MAX_QUEUE,
                                    "queue_timeout": "30s"}}],
                       admin={"listen": "127.0.0.1:0"}, log={"access_log": False})
    proxies = [module_procs.proxy(cfg) for _ in range(PODS)]
    targets = [(f"127.0.0.1:{p.admin_port}",
                {"namespace": "default", "container": "loopguard", "pod": f"demo-app-{i}"})
               for i, p in enumerate(proxies)]
    prom = ps.Prometheus(module_procs.workdir, targets).start()
    module_procs.on_cleanup(prom.stop)
    loads = [Load(p.port) for p in proxies]
    module_procs.on_cleanup(lambda: [load.stop() for load in loads])
    prom.wait_for_samples("loopguard_route_demand_seconds_total", 3)
    yield {"prom": prom, "loads": loads, "triggers": keda_triggers()}


def set_load(env, clients):
    for i, load in enumerate(env["loads"]):
        load.set_clients(f"/cpu/delay?ms={DELAY_MS}", clients // PODS + (1 if i < clients % PODS else 0))


def values(env):
    """{trigger name: its query's value} now."""
    return {name: env["prom"].value(q) for name, _, q in env["triggers"]}


def step(env, clients, seconds=3):
    """Sets the load, waits until the rate window holds only samples of it, then returns the
    triggers' values at every scrape for `seconds` and the measured demand."""
    set_load(env, clients)
    time.sleep(WINDOW_S + 1.5)   # the window, plus a scrape and the clients' first requests
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        env["prom"].wait_next_scrape()
        samples.append(values(env))
    demand = env["prom"].value(
        f'sum(rate(loopguard_route_demand_seconds_total{{route="cpu"}}[{WINDOW}]))')
    return samples, demand


@pytest.fixture(scope="module")
def stepped(env):
    return {label: (clients, *step(env, clients))
            for label, clients in (("x1", 6), ("x3", 18), ("back to x1", 6))}


def test_triggers_are_the_shipped_ones(env):
    assert [name for name, _, _ in env["triggers"]] == ["demand", "demand-with-refusals"]
    assert all(threshold == 0.7 for _, threshold, _ in env["triggers"])


def test_demand_is_exact_on_live_traffic(stepped):
    for label, (clients, samples, demand) in stepped.items():
        # Little's law: N closed-loop clients keep N requests in flight or queued.
        assert 0.85 * clients <= demand <= 1.05 * clients, (label, demand)
        for v in samples:
            assert v["demand"] == pytest.approx(demand / CAPACITY, rel=0.15), (label, v)
            # Nothing refused at these loads: the second trigger equals the first.
            assert v["demand-with-refusals"] == pytest.approx(v["demand"], rel=1e-6), (label, v)


def test_desired_replicas_follow_a_stepped_load(stepped):
    # The desired counts the HPA computes from the triggers (from the 2 pods there are).
    want = {label: math.ceil(clients / CAPACITY / 0.7) for label, (clients, _, _) in stepped.items()}
    assert want == {"x1": 2, "x3": 6, "back to x1": 2}
    for label, (_, samples, _) in stepped.items():
        got = {hpa_recommendation(PODS, v["demand"]) for v in samples}
        assert got == {want[label]}, (label, samples)
    low = sum(v["demand"] for v in stepped["x1"][1]) / len(stepped["x1"][1])
    high = sum(v["demand"] for v in stepped["x3"][1]) / len(stepped["x3"][1])
    assert high / low == pytest.approx(3.0, rel=0.15), (low, high)


def test_no_oscillation_at_a_steady_load(stepped):
    """An HPA fed at every scrape of the steady x3 load scales once (2 -> 6) and then holds; once
    the 6 pods run, the value does not change (the demand is the load's, the capacity one pod's),
    so 6 is what it keeps asking for: no flapping between 5, 6 and 7."""
    hpa = Hpa(minimum=2, maximum=20)
    current, counts = PODS, []
    for i, v in enumerate(stepped["x3"][1]):
        current = hpa.step(float(i), current, [v["demand"], v["demand-with-refusals"]])
        counts.append(current)
    assert counts[0] == 6 and set(counts) == {6}, counts
    assert {hpa_recommendation(6, v["demand"]) for v in stepped["x3"][1]} == {6}


def test_refusals_raise_the_second_trigger_only(env, stepped):
    """Past capacity + queue the route refuses; refused requests leave at once and add no demand,
    which the second trigger makes up for (total / served requests)."""
    samples, _ = step(env, 40, seconds=3)   # 20 per pod: 5 in flight + 6 queued, the rest refused
    refused = env["prom"].value(f'sum(rate(loopguard_route_rejected_total{{route="cpu"}}[{WINDOW}]))')
    assert refused > 5, refused
    for v in samples:
        # Demand is capped by what the pods hold: 2 x (5 + 6) = 22 requests = 4.4 pods' worth.
        assert v["demand"] == pytest.approx(2 * (CAPACITY + MAX_QUEUE) / CAPACITY, rel=0.15), v
        assert 1.2 * v["demand"] <= v["demand-with-refusals"] <= 4 * v["demand"] + 1e-9, v
    set_load(env, 0)


def test_an_empty_result_is_an_error_not_a_zero(env):
    """With ignoreNullValues "false" KEDA treats an empty result as a failure (then its fallback).
    The shipped queries do return nothing when their selector matches nothing (a renamed label, a
    PodMonitor that is missing), rather than 0, so that setting has something to catch."""
    for name, _, q in env["triggers"]:
        broken = q.replace('container="loopguard"', 'container="renamed"')
        assert broken != q
        assert env["prom"].query(broken) == [], name


# ---- the standalone sidecar ----------------------------------------------------------------------
def metric(port, name, route):
    text = http_request(port, "GET", "/metrics").body.decode()
    m = re.search(rf'^{name}{{route="{route}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def test_sidecar_reports_demand_and_its_pools_capacity(procs):
    """`loopguard offload`'s implicit route "offload": its capacity is the pool's ready workers x
    concurrency_per_worker (it drops while a crashed worker is replaced), and its demand counts
    requests running on the workers and waiting for one."""
    cfg = {"admin": {"listen": "127.0.0.1:0"}, "offload": {"listen": "127.0.0.1:0", "pool": "cpu"},
           "pools": {"cpu": pool_def(["--boot-delay", "1"], workers=2)}}
    sidecar = start_sidecar(procs, to_yaml(cfg) + "\n")
    wait_ready(sidecar, 2, timeout=20)
    admin = sidecar.admin_port
    wait_until(lambda: metric(admin, "loopguard_route_capacity", "offload") == 2, 10, desc="capacity 2")
    before = metric(admin, "loopguard_route_demand_seconds_total", "offload")
    # 4 requests of 400 ms on 2 workers: 2 run at once, 2 wait 400 ms, then run.
    calls = [Background(http_request, sidecar.port, "GET", "/sleep?ms=400", timeout=20)
             for _ in range(4)]
    results = [c.result(20) for c in calls]
    assert [r.status for r in results] == [200] * 4
    demand = metric(admin, "loopguard_route_demand_seconds_total", "offload") - before
    assert 2 * 0.4 + 2 * 0.8 - 0.1 <= demand <= 2 * 0.4 + 2 * 0.8 + 0.4, demand
    status = http_request(admin, "GET", "/status").json()
    assert status["loopguard"]["mode"] == "offload"
    (route,) = status["routes"]
    assert (route["name"], route["capacity"], route["limit"]) == ("offload", 2, None)
    # A worker crashes: one slot fewer until its replacement is ready (it boots for 1 s).
    assert http_request(sidecar.port, "GET", "/crash?ms=0").status == 502
    wait_until(lambda: metric(admin, "loopguard_route_capacity", "offload") == 1, 5, desc="capacity 1")
    wait_until(lambda: metric(admin, "loopguard_route_capacity", "offload") == 2, 20, desc="capacity 2 again")
