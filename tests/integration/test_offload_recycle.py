"""Recycling offload workers with real processes: after max_requests (with jitter) and above
max_rss, the replacement starts first and the old worker finishes what it has, so no request
fails and capacity never drops."""
import os
import threading
import time

from harness import Background, pid_alive, wait_until
from offload_support import (config_text, get, lines_matching, pool_def, pool_route, ready_pids,
                             wait_ready, worker_peaks)


def start(procs, worker_args=(), **pool_kwargs):
    stats = procs.path("stats")
    os.makedirs(stats, exist_ok=True)
    text = config_text({"cpu": pool_def(worker_args, stats_dir=stats, **pool_kwargs)},
                       [pool_route()])
    return procs.proxy(text), stats


def hammer(proxy, clients, per_client, path):
    """`clients` threads each sending `per_client` requests back to back; returns responses."""
    out = []
    lock = threading.Lock()

    def client():
        for _ in range(per_client):
            try:
                r = get(proxy, path, timeout=30)
            except Exception as e:  # noqa: BLE001 - reported below
                r = e
            with lock:
                out.append(r)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_max_requests_recycles_under_load_without_a_failed_request(procs):
    proxy, stats = start(procs, workers=2, max_requests=10)
    first = wait_ready(proxy, 2)
    results = hammer(proxy, clients=6, per_client=25, path="/work?ms=5")
    failed = [r for r in results if getattr(r, "status", None) != 200]
    assert len(results) == 150 and not failed, failed[:3]
    served_by = {r.json()["pid"] for r in results}
    # A worker past max_requests serves on until its replacement is ready (capacity never
    # drops), so each served 10+ requests; still, many processes took turns.
    assert len(served_by) >= 4, served_by
    recycles = lines_matching(proxy, r"served \d+ requests \(max_requests 10\): recycling it")
    assert len(recycles) >= 4, recycles
    # Replaced workers are stopped once their requests are done ...
    wait_until(lambda: not any(pid_alive(p) for p in first), 10, desc="first workers to stop")
    for line in lines_matching(proxy, r"stopped \(recycled: max_requests\)"):
        assert "exit code 0" in line, line  # a SIGTERM to an idle worker: a clean exit
    # ... and no process ever had more than one request at a time.
    assert max(worker_peaks(stats).values()) == 1


def test_jitter_spreads_recycling(procs):
    proxy, _ = start(procs, workers=2, max_requests=20)
    wait_ready(proxy, 2)
    hammer(proxy, clients=2, per_client=60, path="/work?ms=1")
    counts = [int(line.split("served ")[1].split()[0])
              for line in lines_matching(proxy, r"served \d+ requests \(max_requests 20\)")]
    assert counts and all(20 <= c <= 22 for c in counts), counts


def test_recycled_worker_finishes_its_request_before_it_stops(procs):
    proxy, _ = start(procs, workers=1, max_requests=2)
    [first] = wait_ready(proxy, 1)
    assert get(proxy, "/work?ms=1").json()["pid"] == first
    # The second request reaches max_requests: the replacement starts while it runs.
    slow = Background(get, proxy, "/sleep?ms=1200")
    second = wait_ready(proxy, 2)[1]
    assert pid_alive(first), "the old worker must live until its request is done"
    r = slow.result()
    assert r.status == 200 and r.json()["pid"] == first
    wait_until(lambda: not pid_alive(first), 5, desc="the recycled worker to stop")
    assert get(proxy, "/work?ms=1").json()["pid"] == second


def test_max_rss_recycles_a_bloated_worker(procs):
    proxy, stats = start(procs, workers=1, max_rss="80MiB")
    [first] = wait_ready(proxy, 1)
    r = get(proxy, "/alloc?mb=120")
    assert r.status == 200 and r.json()["pid"] == first
    proxy.wait_for_line(r"worker 0 \(pid %d\) uses \d+ KiB \(max_rss 81920 KiB\): recycling it"
                        % first, timeout=5)
    wait_until(lambda: len(ready_pids(proxy)) >= 2, 10, desc="the replacement")
    wait_until(lambda: not pid_alive(first), 10, desc="the bloated worker to stop")
    # Requests during and after the recycle are all served.
    t_end = time.monotonic() + 0.5
    while time.monotonic() < t_end:
        assert get(proxy, "/work?ms=1").status == 200
    assert get(proxy, "/work?ms=1").json()["pid"] != first
