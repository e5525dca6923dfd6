"""Shutdown with offload workers: in-flight pool requests finish on SIGTERM, and no worker
process (nor anything in its process group) outlives loopguard, whatever the exit path:
SIGTERM, SIGINT, a second signal, the drain budget running out, a worker ignoring SIGTERM,
loopguard itself being SIGKILLed, or a start-up failure."""
import os
import signal
import socket
import subprocess
import time

import pytest

from harness import Background, RawConn, build_request, pid_alive, wait_until
from offload_support import (assert_gone, config_text, get, pool_def, pool_route, started_pids,
                             wait_ready, worker_peaks)


def start(procs, worker_args=(), top=None, **pool_kwargs):
    stats = procs.path("stats")
    os.makedirs(stats, exist_ok=True)
    text = config_text({"cpu": pool_def(worker_args, stats_dir=stats, **pool_kwargs)},
                       [pool_route()], **(top or {}))
    return procs.proxy(text), stats


def in_flight(stats, n):
    """Waits until n worker processes have started a request (each records its peak)."""
    wait_until(lambda: len(worker_peaks(stats)) >= n, 10, desc=f"{n} requests on workers")


def test_sigterm_lets_in_flight_pool_requests_finish(procs):
    proxy, stats = start(procs, workers=2)
    pids = wait_ready(proxy, 2)
    requests = [Background(get, proxy, "/sleep?ms=1500") for _ in range(2)]
    in_flight(stats, 2)
    proxy.send_signal(signal.SIGTERM)
    for r in requests:
        resp = r.result()
        assert resp.status == 200, resp
        assert resp.header("connection") == "close"
    assert proxy.wait_exit(10) == 0
    assert_gone(pids)
    proxy.wait_for_line(r"worker \d \(pid \d+\) stopped \(shutdown\)")


@pytest.mark.parametrize("signals", [["SIGTERM"], ["SIGINT"], ["SIGTERM", "SIGTERM"],
                                     ["SIGINT", "SIGTERM"]], ids="-then-".join)
def test_no_worker_survives_a_signal(procs, signals):
    proxy, stats = start(procs, workers=2, request_timeout="60s")
    pids = wait_ready(proxy, 2)
    conn = RawConn(proxy.target)
    conn.send(build_request("GET", "/hang"))
    in_flight(stats, 1)
    t0 = time.monotonic()
    proxy.send_signal(getattr(signal, signals[0]))
    proxy.wait_for_line(r"draining")
    if len(signals) == 2:
        proxy.send_signal(getattr(signal, signals[1]))  # the second one stops at once
        assert proxy.wait_exit(10) == 0
        assert time.monotonic() - t0 < 5
    else:
        # Nothing to await: the drain going on (not ending) is what is checked, over a window.
        time.sleep(0.3)
        assert proxy.running() and all(pid_alive(p) for p in pids)
        conn.hang_up()  # its client gives up: the drain completes, then the workers stop
        assert proxy.wait_exit(10) == 0
    conn.close()
    assert_gone(pids + started_pids(proxy))


def test_drain_budget_running_out_kills_the_workers(procs):
    proxy, stats = start(procs, workers=1, request_timeout="60s", top={"timeouts": {"drain": "1s"}})
    pids = wait_ready(proxy, 1)
    hung = Background(get, proxy, "/hang", timeout=20)
    in_flight(stats, 1)
    t0 = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait_exit(10) == 0
    assert time.monotonic() - t0 < 4
    hung.join(5)
    assert_gone(pids)


def test_worker_ignoring_sigterm_is_sigkilled_at_shutdown(procs):
    proxy, _ = start(procs, ["--ignore-sigterm"], workers=2)
    pids = wait_ready(proxy, 2)
    t0 = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait_exit(15) == 0
    assert 4 <= time.monotonic() - t0 < 9, "SIGKILL follows SIGTERM after the 5 s grace"
    proxy.wait_for_line(r"ignored SIGTERM: sending SIGKILL")
    assert_gone(pids)


def test_workers_die_with_loopguard_even_when_it_is_sigkilled(procs):
    proxy, _ = start(procs, workers=2)
    pids = wait_ready(proxy, 2)
    proxy.proc.send_signal(signal.SIGKILL)
    proxy.wait_exit(5)
    # PR_SET_PDEATHSIG, set by the exec wrapper before the worker command runs.
    assert_gone(pids, timeout=3)


def test_start_up_failure_leaves_no_worker_behind(procs):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        text = config_text({"cpu": pool_def(workers=2)}, [pool_route()],
                           listen=f"127.0.0.1:{port}")
        proxy = procs.proxy(text, wait=False)
        assert proxy.wait_exit(10) == 1
        assert started_pids(proxy) == []
        assert "cannot listen" in proxy.log_text()
    finally:
        taken.close()
    # Nothing was spawned, and the socket directory was removed.
    leftovers = [d for d in os.listdir("/tmp") if d.startswith(f"loopguard-{proxy.pid}-")]
    assert leftovers == []


def test_socket_directory_is_removed_at_exit(procs):
    proxy, _ = start(procs, workers=1)
    wait_ready(proxy, 1)
    dirs = [d for d in os.listdir(os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
            if d.startswith(f"loopguard-{proxy.pid}-")] + \
        [d for d in os.listdir("/tmp") if d.startswith(f"loopguard-{proxy.pid}-")]
    assert dirs, "the worker socket directory exists while running"
    proxy.stop()
    assert not [d for d in os.listdir("/tmp") if d.startswith(f"loopguard-{proxy.pid}-")]


@pytest.mark.skipif(bool(os.environ.get("XDG_RUNTIME_DIR")),
                    reason="socket directories go under $XDG_RUNTIME_DIR, not /tmp")
def test_socket_directory_left_by_a_killed_loopguard_is_removed_at_the_next_start(procs):
    dead = subprocess.Popen(["/bin/true"])
    dead.wait()  # a pid that no longer exists
    stale = f"/tmp/loopguard-{dead.pid}-zzzzzz"
    os.makedirs(stale, exist_ok=True)
    open(os.path.join(stale, "cpu.0.1.sock"), "w").close()
    live = f"/tmp/loopguard-{os.getpid()}-yyyyyy"  # a live pid's directory stays
    os.makedirs(live, exist_ok=True)
    try:
        proxy, _ = start(procs, workers=1)
        wait_ready(proxy, 1)
        assert not os.path.exists(stale)
        assert os.path.isdir(live)
    finally:
        os.rmdir(live)
