"""`loopguard offload` (the sidecar): it serves `offload.listen` (unix socket or TCP) with one
implicit route to `offload.pool`, and a `loopguard proxy` reaches it as an ordinary upstream.
Worker failures surface through both as the same statuses and overload headers."""
import os
import signal

from harness import assert_overload, http_request, proxy_config, to_yaml, wait_until
from offload_support import (assert_gone, pool_def, start_sidecar, started_pids, wait_ready,
                             worker_peaks)


def sidecar_config(listen, worker_args=(), stats=None, **pool_kwargs):
    cfg = {"offload": {"listen": listen, "pool": "cpu"},
           "pools": {"cpu": pool_def(worker_args, stats_dir=stats, **pool_kwargs),
                     # declared but not the sidecar's pool: never started
                     "other": pool_def(workers=1)}}
    return to_yaml(cfg) + "\n"


def front_config(sidecar_socket, upstream):
    return proxy_config(
        {"offload": {"endpoints": [f"unix:{sidecar_socket}"]}, "app": {"endpoints": [upstream.address]}},
        [{"name": "cpu", "match": {"prefix": "/cpu/"}, "upstream": "offload"},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}])


def test_proxy_reaches_the_sidecar_pool_over_a_unix_socket(procs):
    stats = procs.path("stats")
    os.makedirs(stats)
    sock = procs.path("offload.sock")
    sidecar = start_sidecar(procs, sidecar_config(f"unix:{sock}", stats=stats, workers=2))
    assert sidecar.unix_path == sock
    pids = wait_ready(sidecar, 2)
    app = procs.upstream("app")
    proxy = procs.proxy(front_config(sock, app))
    for _ in range(10):
        r = http_request(proxy.port, "GET", "/cpu/work?ms=5")
        assert r.status == 200, r
        assert r.json()["pid"] in pids
    r = http_request(proxy.port, "GET", "/echo")
    assert r.status == 200 and r.header("x-upstream") == "app"
    # The sidecar's access log names its implicit route; only its own pool started.
    sidecar.wait_for_line(r"route=offload ", stream="stdout")  # flushed every 200 ms
    assert started_pids(sidecar, "other") == []
    assert max(worker_peaks(stats).values()) == 1
    proxy.stop()
    sidecar.stop()
    assert_gone(pids)


def test_sidecar_listens_on_tcp(procs):
    sidecar = start_sidecar(procs, sidecar_config("127.0.0.1:0", workers=1))
    wait_ready(sidecar, 1)
    r = http_request(sidecar.port, "GET", "/anything/work?ms=1")
    assert r.status == 200, r


def test_worker_crash_and_no_workers_pass_through_the_proxy(procs):
    sock = procs.path("offload.sock")
    sidecar = start_sidecar(procs, sidecar_config(f"unix:{sock}", workers=1))
    wait_ready(sidecar, 1)
    proxy = procs.proxy(front_config(sock, procs.upstream("app")))
    r = http_request(proxy.port, "GET", "/cpu/crash?ms=10")
    assert r.status == 502, r
    assert r.json()["route"] == "offload"  # made by the sidecar, passed on as it is

    broken = procs.path("offload2.sock")
    start_sidecar(procs, sidecar_config(f"unix:{broken}", ["--boot-exit", "2"], workers=1))
    proxy2 = procs.proxy(front_config(broken, procs.upstream("app2")))
    wait_until(lambda: http_request(proxy2.port, "GET", "/cpu/work?ms=1").status == 503, 5,
               interval=0.1, desc="the broken sidecar to refuse")
    assert_overload(http_request(proxy2.port, "GET", "/cpu/work?ms=1"), 503, "no_workers")


def test_sidecar_sigterm_stops_its_workers(procs):
    sock = procs.path("offload.sock")
    sidecar = start_sidecar(procs, sidecar_config(f"unix:{sock}", workers=2))
    pids = wait_ready(sidecar, 2)
    sidecar.stop(sig=signal.SIGTERM)
    assert_gone(pids)
    assert not os.path.exists(sock), "the listener's socket file is removed"
