"""The loop-block advisor on a real FastAPI app (apps/advisor_app.py): every endpoint gets the
verdict its physics says, in one process and under `uvicorn --workers 2`, with Poisson arrivals
and the probe off (the passive statistics decide) and with paced arrivals and the probe on
(the probe decides where arrival phases fool the passive ones).

What must be flagged, by construction: CPU in the `async def` (a pure-Python spin, and hashlib
called on the loop thread), and the "thread-pool fix" that still holds the GIL (math.factorial
in run_in_executor). What must not: the same hashing in a thread (hashlib releases the GIL), a
process pool, `def` endpoints in Starlette's thread pool that sleep or read a file, an
asyncio.sleep, an aiosqlite query, an asyncio.Lock held across an await, a multipart upload.

Two apps (one process, two workers) run side by side, each behind a proxy of its own, first
with Poisson arrivals and the probe off, then (fresh proxies) paced with the probe on; each
scenario's traffic comes from a process of its own: mixed traffic at modest rates (~100
requests/s per scenario, blockers 4/s each: ~15% of one core on the loop). A scenario ends once
every verdict has been right for 3 polls in a row (1 s apart) and it ran 12 s (at most 90 s):
waiting endpoints must never be reported blocking at any poll, and every final verdict must be
right with >= 30 samples. About 65 s in all.
"""
import concurrent.futures

import advisor_support as adv

SPEC = {"GET /cpu/loop": 4, "GET /cpu/hash": 4, "GET /cpu/gil-thread": 4,
        "GET /cpu/nogil-thread": 4, "GET /cpu/process": 4, "GET /sync/sleep": 8,
        "GET /sync/read": 4, "GET /io/sleep": 40, "GET /db": 15, "GET /lock": 8,
        "POST /upload": 4}
EXPECTED = {
    "GET /cpu/loop": "blocks_loop",        # CPU in the async def
    "GET /cpu/hash": "blocks_loop",        # hashlib in the async def: the loop thread hashes
    "GET /cpu/gil-thread": "blocks_loop",  # math.factorial in a thread: never releases the GIL
    "GET /cpu/nogil-thread": "ok",         # hashlib on 2 MiB in a thread: releases the GIL
    "GET /cpu/process": "ok",              # a process pool
    "GET /sync/sleep": "ok",               # a `def` endpoint: Starlette's threadpool
    "GET /sync/read": "ok",                # a `def` endpoint reading a file
    "GET /io/sleep": "ok",
    "GET /db": "ok",                       # aiosqlite
    "GET /lock": "ok",                     # an asyncio.Lock held across an await
    "POST /upload": "ok",                  # a multipart file upload
}
WORKERS = (1, 2)


def scenario_name(workers, paced):
    return (f"{'one-process' if workers == 1 else f'workers-{workers}'}/"
            f"{'paced-probe' if paced else 'poisson-passive'}")


def test_every_endpoint_gets_its_physics_verdict(procs):
    apps = [adv.fastapi_app(workers=w) for w in WORKERS]
    for app in apps:
        procs.on_cleanup(app.stop)
    with concurrent.futures.ThreadPoolExecutor(len(apps)) as starting:
        list(starting.map(lambda a: a.start(), apps))
    pids = [app.pids() for app in apps]
    # The passive scenarios side by side; the probe's one at a time (the probe's evidence on
    # the GIL thread is the thinnest, and a starved machine thins it further).
    phases = [[(0, False), (1, False)], [(0, True)], [(1, True)]]
    for phase in phases:
        scenarios = []
        for i, paced in phase:
            proxy = procs.proxy(adv.advisor_config(apps[i].port, probe=paced))
            scenarios.append(adv.Scenario(scenario_name(WORKERS[i], paced), proxy, SPEC, EXPECTED,
                                          paced=paced, seed=i + 1 + 10 * paced))
        reports = adv.run_scenarios(scenarios)
        for sc, (i, _) in zip(scenarios, phase):
            check_report(sc, reports[sc.name], pids[i])
            sc.proxy.stop()  # graceful: exit 0, nothing leaked (ASan builds check at exit)


def check_report(sc, report, app_pids):
    print(f"{sc.name}: done after {sc.done_after} s\n{adv.summary(report)}")
    # Statistics are kept per process: the pids the advisor found are the app's workers.
    found = sorted(p["pid"] for p in report["processes"])
    assert found == app_pids, (sc.name, found, adv.summary(report))
    blocking = {f"{e['method']} {e['path']}": e for e in report["endpoints"]
                if e["verdict"] == "blocks_loop"}
    for key, e in blocking.items():
        # The spin and the hashing are 12 ms, factorial(35000) about as long: the estimate is
        # of that order.
        assert 3 <= e["blocking_ms"] <= 60, (sc.name, key, e)
        assert 0 < e["loop_share"] < 0.5, (sc.name, key, e)
        assert e["confidence"] >= 0.95, (sc.name, key, e)
    if sc.paced:
        assert all(e["evidence"]["decided_by"] in ("s1", "s3") for e in report["endpoints"])
        assert blocking["GET /cpu/loop"]["evidence"]["s3_probe"]["probes"] >= 10, sc.name
