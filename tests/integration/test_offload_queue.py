"""offload.max_queue / offload.queue_timeout: a saturated `loopguard offload` refuses at once (or
after a short wait) with 503 + X-Loopguard-Overload, which the proxy in front passes on, instead
of holding the excess for the pool's request_timeout and ending it as a 504. This is how
deploy/kubernetes/scale-out/ sizes its two layers (README there)."""
import os

from harness import Pending, proxy_config, to_yaml, wait_until
from offload_support import pool_def, start_sidecar, wait_ready, worker_peaks


def test_a_saturated_sidecar_refuses_fast_and_the_proxy_passes_it_on(procs):
    sock = procs.path("offload.sock")
    stats = procs.path("stats")
    os.makedirs(stats)
    sidecar = start_sidecar(procs, to_yaml({
        "offload": {"listen": f"unix:{sock}", "pool": "cpu", "max_queue": 1,
                    "queue_timeout": "500ms"},
        "pools": {"cpu": pool_def(workers=1, request_timeout="30s", stats_dir=stats)}}) + "\n")
    wait_ready(sidecar, 1)
    app = procs.upstream("app")
    # The proxy admits more than the one worker can take (as scale-out does while the HPA has
    # not caught up): the sidecar's own bounds decide what happens to the excess.
    proxy = procs.proxy(proxy_config(
        {"offload": {"endpoints": [f"unix:{sock}"]}, "app": {"endpoints": [app.address]}},
        [{"name": "cpu", "match": {"prefix": "/cpu/"}, "upstream": "offload",
          "limits": {"max_in_flight": 4, "max_queue": 10}},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}]))
    first = Pending(proxy.port, "/cpu/sleep?ms=2000")
    wait_until(lambda: worker_peaks(stats), 5, desc="the first request on the worker")
    rest = [Pending(proxy.port, "/cpu/sleep?ms=2000") for _ in range(3)]
    results = [p.result() for p in rest]
    reasons = sorted(r.header("x-loopguard-overload") or "" for r in results)
    assert all(r.status == 503 for r in results), [(r.status, r.body) for r in results]
    # One waits in the sidecar's queue (max_queue 1) for 500 ms; the others find it full.
    assert reasons == ["queue_full", "queue_full", "queue_timeout"], reasons
    for r in results:
        assert r.elapsed < 1.5, f"refused after {r.elapsed:.2f}s, not fast"
        assert r.header("retry-after") is not None
    assert first.result().status == 200
