"""Offload pool failures with real worker processes: a crash mid-request (502, the rest of the
queue carries on, the pool recovers), a hang (504 at request_timeout, the worker killed and
replaced), a crash loop (bounded restarts, no CPU spin, 503 no_workers), a worker never ready,
and slow requests running on_slow before any kill."""
import os
import re
import time

from harness import (Background, assert_overload, assert_proxy_error, http_request, pid_alive,
                     wait_route, wait_until)
from offload_support import (config_text, cpu_seconds, get, get_all, lines_matching, pool_def,
                             pool_route, ready_pids, started_pids, wait_ready, worker_peaks)


def start(procs, worker_args=(), route_kwargs=None, **pool_kwargs):
    stats = procs.path("stats")
    os.makedirs(stats, exist_ok=True)
    text = config_text({"cpu": pool_def(worker_args, stats_dir=stats, **pool_kwargs)},
                       [pool_route(**(route_kwargs or {}))],
                       admin={"listen": "127.0.0.1:0"})  # the route's gauges, for wait_route
    return procs.proxy(text)


def test_crash_mid_request_gives_502_and_the_pool_recovers(procs):
    proxy = start(procs, workers=1)
    [first] = wait_ready(proxy, 1)
    r = get(proxy, "/crash?ms=50")
    body = assert_proxy_error(r, 502, route="cpu")
    assert "worker" in body["error"] or "closed" in body["error"], body
    proxy.wait_for_line(rf"pool cpu: worker 0 \(pid {first}\) crashed: exit code 3")
    wait_until(lambda: not pid_alive(first), 5, desc="the crashed worker to be gone")
    # A replacement comes up after the backoff and serves.
    wait_ready(proxy, 2)
    r = get(proxy, "/work?ms=1")
    assert r.status == 200, r
    assert r.json()["pid"] not in (first,)


def test_crash_fails_only_its_own_request_while_the_queue_carries_on(procs):
    proxy = start(procs, workers=2)
    wait_ready(proxy, 2)
    paths = ["/crash?ms=100"] + ["/work?ms=20"] * 30
    results = get_all(proxy, paths)
    assert results[0].status == 502, results[0]
    others = [r for r in results[1:] if getattr(r, "status", None) != 200]
    assert not others, others[:3]


def test_crashed_request_is_not_retried_on_another_worker(procs):
    proxy = start(procs, workers=2)
    wait_ready(proxy, 2)
    # A keep-alive connection to each worker exists now, so the crash hits a reused
    # connection: the one case the exchange would retry an idempotent request.
    get_all(proxy, ["/work?ms=50"] * 4)
    assert get(proxy, "/crash?ms=20").status == 502
    # Nothing to await: a retry is what must not happen. Long enough for one to have crashed
    # the second worker (a /crash?ms=20 request), short enough not to slow the suite.
    time.sleep(0.3)
    assert len(lines_matching(proxy, r"crashed: exit code 3")) == 1


def test_hang_gives_504_at_request_timeout_and_the_worker_is_replaced(procs):
    proxy = start(procs, workers=1, request_timeout="1s")
    [first] = wait_ready(proxy, 1)
    t0 = time.monotonic()
    r = get(proxy, "/hang")
    elapsed = time.monotonic() - t0
    assert_proxy_error(r, 504, route="cpu")
    assert 0.9 <= elapsed < 1.6, elapsed
    proxy.wait_for_line(r"exceeded request_timeout \(1000 ms\) on worker 0 \(pid %d\)" % first)
    wait_until(lambda: not pid_alive(first), 5, desc="the hung worker to be killed")
    r = get(proxy, "/work?ms=1")
    assert r.status == 200 and r.json()["pid"] != first, r


def test_hung_worker_that_ignores_sigterm_is_killed(procs):
    proxy = start(procs, ["--ignore-sigterm"], workers=1, request_timeout="500ms")
    [first] = wait_ready(proxy, 1)
    assert get(proxy, "/hang").status == 504
    proxy.wait_for_line(r"ignored SIGTERM: sending SIGKILL", timeout=5)
    wait_until(lambda: not pid_alive(first), 5, desc="SIGKILL to take the worker")
    assert get(proxy, "/work?ms=1").status == 200


def test_crash_loop_restarts_with_backoff_without_spinning_and_refuses_with_no_workers(procs):
    stats = procs.path("stats")
    os.makedirs(stats)
    text = config_text(
        {"cpu": pool_def(["--boot-exit", "3"], workers=2, stats_dir=stats,
                         restart_backoff={"initial": "50ms", "max": "400ms"})},
        [pool_route(queue_timeout="10s")])
    proxy = procs.proxy(text)
    line = proxy.wait_for_line(r"pool cpu: worker \d failed to start: exit code 3")
    # What it said on stderr was logged as it came, so the report points there, not repeats it.
    assert "its output is in the lines above" in line, line
    assert lines_matching(proxy, r"\[cpu/\d\] worker \d: configured to fail at boot")
    # While every worker keeps failing, a request is refused at once, not after 10 s.
    t0 = time.monotonic()
    r = get(proxy, "/work?ms=1")
    assert time.monotonic() - t0 < 1.0
    assert_overload(r, 503, "no_workers")
    # Restarts are bounded by the backoff, and loopguard does not spin meanwhile.
    cpu0, t0 = cpu_seconds(proxy.pid), time.monotonic()
    n0 = len(started_pids(proxy))
    time.sleep(3.0)  # the thing measured: what loopguard does over 3 s of crash loop
    cpu1, t1 = cpu_seconds(proxy.pid), time.monotonic()
    n1 = len(started_pids(proxy))
    # 2 slots at the 400 ms cap: ~8 starts per 3 s each at most, plus slack for scheduling.
    assert n1 - n0 <= 20, f"{n1 - n0} starts in {t1 - t0:.1f}s"
    assert n1 - n0 >= 4, f"only {n1 - n0} restarts in {t1 - t0:.1f}s"
    assert (cpu1 - cpu0) / (t1 - t0) < 0.10, f"loopguard used {cpu1 - cpu0:.2f}s CPU in {t1 - t0:.1f}s"
    assert_overload(get(proxy, "/work?ms=1"), 503, "no_workers")


def test_queued_requests_get_no_workers_when_the_replacement_cannot_start(procs):
    flag = procs.path("fail-boot")
    proxy = start(procs, ["--fail-boot-if-exists", flag], workers=1,
                  route_kwargs={"queue_timeout": "15s"})
    wait_ready(proxy, 1)
    crash = Background(get, proxy, "/crash?ms=600")
    wait_route(proxy, "cpu", in_flight=1)  # the crashing request holds the only slot
    queued = [Background(get, proxy, "/work?ms=1") for _ in range(3)]
    wait_route(proxy, "cpu", queued=3)  # they wait in the route queue
    open(flag, "w").close()  # from now on the worker cannot start
    assert crash.result().status == 502
    t0 = time.monotonic()
    for q in queued:
        assert_overload(q.result(timeout=10), 503, "no_workers")
    assert time.monotonic() - t0 < 5, "queued requests waited for their queue_timeout"
    os.unlink(flag)  # the next restart succeeds and the pool serves again
    wait_until(lambda: get(proxy, "/work?ms=1").status == 200, 10, interval=0.2,
               desc="the pool to serve again")


def test_worker_never_ready_is_killed_and_restarted(procs):
    stats = procs.path("stats")
    os.makedirs(stats)
    pool = pool_def(["--never-ready"], workers=1, stats_dir=stats,
                    restart_backoff={"initial": "100ms", "max": "200ms"})
    pool["ready"] = {"path": "/ready", "timeout": "500ms"}
    proxy = procs.proxy(config_text({"cpu": pool}, [pool_route()]))
    proxy.wait_for_line(r"worker 0 \(pid \d+\) not ready within 500 ms \(last probe: GET /ready "
                        r"answered 503\): restarting it")
    first = started_pids(proxy)[0]
    wait_until(lambda: not pid_alive(first), 5, desc="the unready worker to be killed")
    wait_until(lambda: len(started_pids(proxy)) >= 3, 5, desc="restarts")
    assert ready_pids(proxy) == []
    assert_overload(get(proxy, "/work?ms=1"), 503, "no_workers")


def test_slow_request_is_logged_and_on_slow_runs_once_with_the_pid(procs):
    stats = procs.path("stats")
    os.makedirs(stats)
    pool = pool_def(workers=1, stats_dir=stats, slow_after="300ms",
                    on_slow=["/bin/sh", "-c", "echo diagnosing pid {pid}"])
    proxy = procs.proxy(config_text({"cpu": pool}, [pool_route()]))
    [pid] = wait_ready(proxy, 1)
    r = get(proxy, "/sleep?ms=900", headers={"X-Request-Id": "slow-one"})
    assert r.status == 200
    line = proxy.wait_for_line(r"slow request slow-one on route cpu: worker 0 \(pid %d\)" % pid)
    assert re.search(r"busy for \d+ ms \(slow_after 300 ms\)", line), line
    proxy.wait_for_line(r"\[cpu/0 on_slow\] diagnosing pid %d" % pid)
    # Nothing to await: a second run is what must not happen (it would have logged by now).
    time.sleep(0.2)
    assert len(lines_matching(proxy, r"\[cpu/0 on_slow\] diagnosing")) == 1


def test_on_slow_looks_at_a_hung_worker_before_it_is_killed(procs):
    stats = procs.path("stats")
    os.makedirs(stats)
    # The diagnostic takes 600 ms and checks the worker is still alive at its end; slow_after
    # equals request_timeout, so the kill has to wait for it.
    check = "sleep 0.6; if kill -0 {pid}; then echo worker {pid} alive; else echo worker {pid} gone; fi"
    pool = pool_def(workers=1, stats_dir=stats, slow_after="800ms", request_timeout="800ms",
                    on_slow=["/bin/sh", "-c", check])
    proxy = procs.proxy(config_text({"cpu": pool}, [pool_route()]))
    [pid] = wait_ready(proxy, 1)
    t0 = time.monotonic()
    r = get(proxy, "/hang")
    assert r.status == 504 and time.monotonic() - t0 < 1.5
    proxy.wait_for_line(r"\[cpu/0 on_slow\] worker %d alive" % pid)
    wait_until(lambda: not pid_alive(pid), 8, desc="the worker to be killed after the diagnostic")
    assert max(worker_peaks(stats).values()) == 1


def test_readyz_and_metrics_report_workers_and_restarts(procs):
    stats = procs.path("stats")
    os.makedirs(stats)
    text = config_text({"cpu": pool_def(["--boot-delay", "0.8"], workers=2, stats_dir=stats)},
                       [pool_route()], admin={"listen": "127.0.0.1:0"})
    proxy = procs.proxy(text)
    r = http_request(proxy.admin_port, "GET", "/readyz")
    assert r.status == 503 and b"pool cpu has no ready worker" in r.body, r
    wait_ready(proxy, 2)
    assert http_request(proxy.admin_port, "GET", "/readyz").status == 200
    assert get(proxy, "/crash?ms=1").status == 502
    proxy.wait_for_line(r"crashed: exit code 3")

    def metric(name, **labels):
        text = http_request(proxy.admin_port, "GET", "/metrics").body.decode()
        want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return None

    assert metric("loopguard_pool_worker_restarts_total", pool="cpu", reason="crash") == 1
    assert metric("loopguard_pool_worker_restarts_total", pool="cpu", reason="timeout") == 0
    assert metric("loopguard_pool_workers", pool="cpu", state="ready") == 1
    assert metric("loopguard_pool_workers", pool="cpu", state="starting") in (0, 1)
    wait_ready(proxy, 3)
    wait_until(lambda: metric("loopguard_pool_workers", pool="cpu", state="ready") == 2, 5,
               desc="both workers ready again")
