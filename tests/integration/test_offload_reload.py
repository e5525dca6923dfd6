"""Reloading a config with offload pools: a changed pool rolls its workers (replacement first,
no failed request), the worker count grows and shrinks, a pool no route uses any more stops,
and the sidecar reloads the same way."""
import os
import signal
import threading

from harness import pid_alive, to_yaml, wait_until
from offload_support import (assert_gone, config_text, get, pool_def, pool_route, ready_pids,
                             start_sidecar, wait_ready)


class Load:
    """Clients sending requests in a loop until stopped; every response is kept."""

    def __init__(self, proxy, path="/work?ms=2", clients=3):
        self.results = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(proxy, path), daemon=True)
                        for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, proxy, path):
        while not self.stopping.is_set():
            try:
                self.results.append(get(proxy, path, timeout=20))
            except Exception as e:  # noqa: BLE001 - checked by the test
                self.results.append(e)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(25)
        return self.results


def reload(proxy, text):
    proxy.write_config(text)
    proxy.send_signal(signal.SIGHUP)


def test_changed_pool_rolls_its_workers_without_a_failed_request(procs):
    text = config_text({"cpu": pool_def(workers=2, env={"TEST_CUSTOM": "v1"})}, [pool_route()])
    proxy = procs.proxy(text)
    old = wait_ready(proxy, 2)
    load = Load(proxy)
    wait_until(lambda: len(load.results) >= 20, 10, desc="load to run")
    reload(proxy, config_text({"cpu": pool_def(workers=2, env={"TEST_CUSTOM": "v2"})},
                              [pool_route()]))
    new = wait_ready(proxy, 4)[2:]
    wait_until(lambda: not any(pid_alive(p) for p in old), 10, desc="the old workers to stop")
    results = load.stop()
    failed = [r for r in results if getattr(r, "status", None) != 200]
    assert not failed, failed[:3]
    e = get(proxy, "/env").json()
    assert e["custom"] == "v2" and e["pid"] in new
    assert len(proxy.stderr_lines) and "replaced: config changed" in proxy.log_text(tail=400)


def test_worker_count_grows_and_shrinks_on_reload(procs):
    proxy = procs.proxy(config_text({"cpu": pool_def(workers=1)}, [pool_route()]))
    [first] = wait_ready(proxy, 1)
    reload(proxy, config_text({"cpu": pool_def(workers=3)}, [pool_route()]))
    pids = wait_ready(proxy, 3)
    assert pids[0] == first, "growing keeps the running worker"
    reload(proxy, config_text({"cpu": pool_def(workers=1)}, [pool_route()]))
    proxy.wait_for_line(r"stopped \(pool shrunk\)")
    wait_until(lambda: sum(pid_alive(p) for p in pids) == 1, 10, desc="two workers to stop")
    assert pid_alive(first)
    assert get(proxy, "/work?ms=1").json()["pid"] == first


def test_pool_no_route_uses_any_more_is_stopped_and_a_new_one_started(procs):
    up = procs.upstream("app")
    upstreams = {"app": {"endpoints": [up.address]}}
    app_route = {"name": "app", "match": {"prefix": "/"}, "upstream": "app"}
    proxy = procs.proxy(config_text({"cpu": pool_def(workers=1)},
                                    [pool_route(prefix="/cpu/"), app_route], upstreams=upstreams))
    [cpu_pid] = wait_ready(proxy, 1)
    reload(proxy, config_text({"cpu": pool_def(workers=1), "gpu": pool_def(workers=1)},
                              [pool_route(name="gpu", prefix="/gpu/", pool="gpu"), app_route],
                              upstreams=upstreams))
    proxy.wait_for_line(r"pool cpu: no longer used: stopping its workers")
    [gpu_pid] = wait_ready(proxy, 1, pool="gpu")
    wait_until(lambda: not pid_alive(cpu_pid), 10, desc="the unused pool's worker to stop")
    assert get(proxy, "/gpu/work?ms=1").json()["pid"] == gpu_pid
    assert get(proxy, "/cpu/work?ms=1").status == 200  # now the app's (fake upstream) route
    proxy.stop()
    assert_gone([cpu_pid, gpu_pid])


def test_sidecar_reload_rolls_its_workers(procs):
    sock = procs.path("off.sock")

    def text(custom):
        return to_yaml({"offload": {"listen": f"unix:{sock}", "pool": "cpu"},
                        "pools": {"cpu": pool_def(workers=1, env={"TEST_CUSTOM": custom})}}) + "\n"

    sidecar = start_sidecar(procs, text("a"))
    [old] = wait_ready(sidecar, 1)
    reload(sidecar, text("b"))
    new = wait_ready(sidecar, 2)[1]
    wait_until(lambda: not pid_alive(old), 10, desc="the old worker to stop")
    e = get(sidecar, "/env").json()
    assert (e["pid"], e["custom"]) == (new, "b")
    assert ready_pids(sidecar) == [old, new]
    os.stat(sock)  # still listening on the same socket
