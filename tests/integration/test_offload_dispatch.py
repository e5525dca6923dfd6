"""Offload pool dispatch with real worker processes (workers/test_worker.py): per-worker
concurrency under load, queueing for workers through the route's limits, placeholders and
environment, worker output in the log, slow starts, buffered uploads."""
import hashlib
import os
import re
import time

from harness import (Background, MiB, RawConn, assert_overload, build_request, http_request,
                     pid_alive, wait_route, wait_until)
from offload_support import (config_text, get, get_all, lines_matching, pool_def, pool_route,
                             ready_pids, wait_ready, worker_peaks)


def start(procs, pool_kwargs=None, route_kwargs=None, **top):
    stats = procs.path("stats")
    os.makedirs(stats, exist_ok=True)
    top.setdefault("admin", {"listen": "127.0.0.1:0"})  # the route's gauges, for wait_route
    text = config_text({"cpu": pool_def(stats_dir=stats, **(pool_kwargs or {}))},
                       [pool_route(**(route_kwargs or {}))], **top)
    return procs.proxy(text), stats


def test_concurrency_per_worker_is_never_exceeded_under_120_concurrent_requests(procs):
    proxy, stats = start(procs, {"workers": 2, "concurrency": 2})
    wait_ready(proxy, 2)
    results = get_all(proxy, ["/work?ms=30"] * 120, timeout=60)
    failures = [r for r in results if getattr(r, "status", None) != 200]
    assert not failures, failures[:3]
    peaks = worker_peaks(stats)
    # The worker processes themselves saw at most 2 requests at a time ...
    assert peaks and max(peaks.values()) <= 2, peaks
    # ... and the slots were used: both workers served, at least one ran 2 at once.
    assert len({r.json()["pid"] for r in results}) == 2, peaks
    assert max(peaks.values()) == 2, peaks


def test_one_worker_one_slot_serialises_requests_in_arrival_order(procs):
    proxy, stats = start(procs, {"workers": 1, "concurrency": 1})
    wait_ready(proxy, 1)
    t0 = time.monotonic()
    results = get_all(proxy, ["/sleep?ms=150"] * 6)
    elapsed = time.monotonic() - t0
    assert all(getattr(r, "status", None) == 200 for r in results), results
    assert elapsed >= 0.85, f"6 x 150 ms on one slot took only {elapsed:.2f}s"
    assert worker_peaks(stats) and max(worker_peaks(stats).values()) == 1


def test_full_queue_is_refused_at_once_with_503_queue_full(procs):
    proxy, _ = start(procs, {"workers": 1}, {"max_queue": 1, "queue_timeout": "10s"})
    wait_ready(proxy, 1)
    busy = Background(get, proxy, "/sleep?ms=1200")
    wait_route(proxy, "cpu", in_flight=1)  # the first request is on the worker
    queued = Background(get, proxy, "/sleep?ms=10")
    wait_route(proxy, "cpu", queued=1)  # the second one waits in the route queue
    t0 = time.monotonic()
    refused = get(proxy, "/sleep?ms=10")
    assert time.monotonic() - t0 < 0.5
    assert_overload(refused, 503, "queue_full")
    assert busy.result().status == 200
    assert queued.result().status == 200


def test_waiting_for_a_busy_worker_is_bounded_by_queue_timeout(procs):
    proxy, _ = start(procs, {"workers": 1}, {"queue_timeout": "400ms"})
    wait_ready(proxy, 1)
    busy = Background(get, proxy, "/sleep?ms=1500")
    wait_route(proxy, "cpu", in_flight=1)  # the first request holds the only slot
    t0 = time.monotonic()
    r = get(proxy, "/sleep?ms=10")
    waited = time.monotonic() - t0
    assert_overload(r, 503, "queue_timeout")
    assert 0.3 <= waited < 1.2, waited
    assert busy.result().status == 200


def test_least_busy_worker_takes_the_next_request(procs):
    proxy, _ = start(procs, {"workers": 2, "concurrency": 2})
    pids = wait_ready(proxy, 2)
    long = Background(get, proxy, "/sleep?ms=1500")
    wait_route(proxy, "cpu", in_flight=1)  # one worker has one request
    # Every short request goes to the idle worker, never next to the long one.
    short = [get(proxy, "/work?ms=1").json()["pid"] for _ in range(5)]
    long_pid = long.result().json()["pid"]
    assert set(short) == set(pids) - {long_pid}, (short, long_pid, pids)


def test_worker_gets_placeholders_env_index_and_workdir(procs):
    workdir = procs.path("wd")
    os.makedirs(workdir)
    proxy, _ = start(procs, {"workers": 2, "env": {"TEST_CUSTOM": "idx-{index}"},
                             "workdir": workdir})
    wait_ready(proxy, 2)
    seen = {}
    for _ in range(40):
        e = get(proxy, "/env").json()
        seen[e["index_env"]] = e
        if len(seen) == 2:
            break
    assert set(seen) == {"0", "1"}, seen
    for index, e in seen.items():
        uds = e["argv"][e["argv"].index("--uds") + 1]
        assert re.search(rf"/loopguard-\d+-\w+/cpu\.{index}\.\d+\.sock$", uds), uds
        assert e["custom"] == f"idx-{index}"
        assert os.path.realpath(e["cwd"]) == os.path.realpath(workdir)


def test_worker_output_is_logged_with_pool_and_index(procs):
    # The workers print this on stdout, which is logged at debug (test_worker_output.py).
    proxy, _ = start(procs, {"workers": 2}, log={"level": "debug"})
    pids = wait_ready(proxy, 2)
    for index in (0, 1):
        proxy.wait_for_line(rf"\[cpu/{index}\] worker {index} \(pid \d+\) listening on unix:")
    assert all(pid_alive(p) for p in pids)


def test_port_placeholder_gives_each_worker_a_loopback_port(procs):
    proxy, _ = start(procs, {"workers": 2, "port": True})
    wait_ready(proxy, 2)
    ports = set()
    for _ in range(40):
        e = get(proxy, "/env").json()
        ports.add(int(e["argv"][e["argv"].index("--port") + 1]))
        if len(ports) == 2:
            break
    assert len(ports) == 2 and all(p > 0 for p in ports), ports


def test_requests_wait_for_a_slow_starting_pool_instead_of_failing(procs):
    stats = procs.path("stats")
    os.makedirs(stats)
    text = config_text({"cpu": pool_def(["--boot-delay", "1.0"], workers=1, stats_dir=stats)},
                       [pool_route(queue_timeout="10s")])
    proxy = procs.proxy(text)
    t0 = time.monotonic()
    r = get(proxy, "/work?ms=1")  # sent before any worker is ready
    assert r.status == 200, r
    assert time.monotonic() - t0 >= 0.8
    assert ready_pids(proxy) == [r.json()["pid"]]


def test_buffered_upload_arrives_whole(procs):
    proxy, _ = start(procs, {"workers": 1})
    wait_ready(proxy, 1)
    body = os.urandom(2 * MiB)
    r = http_request(proxy.target, "POST", "/echo", body=body, timeout=20)
    assert r.status == 200, r
    e = r.json()
    assert e["length"] == len(body) and e["sha256"] == hashlib.sha256(body).hexdigest()


def test_two_routes_share_one_pool(procs):
    stats = procs.path("stats")
    os.makedirs(stats)
    text = config_text({"cpu": pool_def(stats_dir=stats, workers=1, concurrency=1)},
                       [pool_route(name="a", prefix="/a/"), pool_route(name="b", prefix="/b/")])
    proxy = procs.proxy(text)
    wait_ready(proxy, 1)
    results = get_all(proxy, ["/a/work?ms=20", "/b/work?ms=20"] * 10)
    assert all(getattr(r, "status", None) == 200 for r in results), results
    assert max(worker_peaks(stats).values()) == 1
    # The access log is flushed every 200 ms.
    proxy.wait_for_line(r"route=a ", stream="stdout")
    proxy.wait_for_line(r"route=b ", stream="stdout")


def test_worker_connection_is_kept_alive_between_requests(procs):
    proxy, _ = start(procs, {"workers": 1})
    wait_ready(proxy, 1)
    for _ in range(5):
        assert get(proxy, "/work?ms=1").status == 200
    # The worker served 5 requests; loopguard logged no connect error.
    assert not lines_matching(proxy, r"refused a connection|cannot connect")


def test_a_request_its_client_abandoned_keeps_its_worker_slot_until_the_worker_is_done(procs):
    proxy, stats = start(procs, {"workers": 1, "concurrency": 1})
    wait_ready(proxy, 1)
    gone = RawConn(proxy.target)
    gone.send(build_request("GET", "/sleep?ms=1000"))
    wait_until(lambda: worker_peaks(stats), 5, desc="the request to reach the worker")
    t0 = time.monotonic()
    gone.hang_up()  # the worker keeps sleeping on it
    r = get(proxy, "/work?ms=1")
    assert r.status == 200
    # The next request waited for the worker instead of joining the abandoned one.
    assert time.monotonic() - t0 >= 0.6
    assert max(worker_peaks(stats).values()) == 1


def test_route_timeout_504_keeps_the_worker_slot_until_the_worker_is_done(procs):
    stats = procs.path("stats")
    os.makedirs(stats)
    short = dict(pool_route(name="short", prefix="/short/"), timeout="300ms")
    text = config_text({"cpu": pool_def(stats_dir=stats, workers=1, concurrency=1)},
                       [short, pool_route()])
    proxy = procs.proxy(text)
    wait_ready(proxy, 1)
    slow = Background(get, proxy, "/short/sleep?ms=1200")
    wait_until(lambda: worker_peaks(stats), 5, desc="the request to reach the worker")
    t0 = time.monotonic()
    assert slow.result().status == 504
    r = get(proxy, "/work?ms=1")
    assert r.status == 200 and time.monotonic() - t0 >= 0.5
    assert max(worker_peaks(stats).values()) == 1
