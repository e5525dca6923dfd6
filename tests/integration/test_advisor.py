"""The loop-block advisor on a real FastAPI app (apps/advisor_app.py): every endpoint gets the
verdict its physics says, in one process and under `uvicorn --workers 2`, with Poisson arrivals
and the probe off (the passive statistics decide) and with paced arrivals and the probe on
(the probe decides where arrival phases fool the passive ones).

Mixed traffic at modest rates (~90 requests/s in all, blockers ~4/s each: ~12% of one core on
the loop) for 25 s per run, so every endpoint has well over 30 samples on a shared 2-core
machine. Waiting endpoints must never be reported blocking at any poll; the final verdicts must
all be right. About 2.5 minutes in all.
"""
import pytest

import advisor_support as adv

SPEC = {"GET /cpu/loop": 4, "GET /cpu/gil-thread": 4, "GET /cpu/nogil-thread": 3,
        "GET /cpu/process": 4, "GET /sync/sleep": 8, "GET /io/sleep": 40, "GET /db": 15,
        "GET /lock": 8, "POST /upload": 4}
EXPECTED = {
    "GET /cpu/loop": "blocks_loop",        # CPU in the async def
    "GET /cpu/gil-thread": "blocks_loop",  # math.factorial in a thread: never releases the GIL
    "GET /cpu/nogil-thread": "ok",         # hashlib on 2 MiB in a thread: releases the GIL
    "GET /cpu/process": "ok",              # a process pool
    "GET /sync/sleep": "ok",               # a `def` endpoint: Starlette's threadpool
    "GET /io/sleep": "ok",
    "GET /db": "ok",                       # aiosqlite
    "GET /lock": "ok",                     # an asyncio.Lock held across an await
    "POST /upload": "ok",                  # a multipart file upload
}
DURATION = 25.0


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "workers-2"])
def app(request):
    a = adv.fastapi_app(workers=request.param)
    a.start()
    a.workers = request.param
    yield a
    a.stop()


@pytest.mark.parametrize("paced", [False, True], ids=["poisson-passive", "paced-probe"])
def test_every_endpoint_gets_its_physics_verdict(procs, app, paced):
    proxy = procs.proxy(adv.advisor_config(app.port, probe=paced))
    report = adv.run_and_judge(proxy, SPEC, EXPECTED, paced=paced, duration=DURATION)

    # Statistics are kept per process: the pids the advisor found are the app's workers.
    found = sorted(p["pid"] for p in report["processes"])
    assert found == app.pids(), (found, adv.summary(report))
    blocking = {f"{e['method']} {e['path']}": e for e in report["endpoints"]
                if e["verdict"] == "blocks_loop"}
    for key, e in blocking.items():
        # The spin is 12 ms and factorial(35000) about as long: the estimate is of that order.
        assert 3 <= e["blocking_ms"] <= 60, (key, e)
        assert 0 < e["loop_share"] < 0.5, (key, e)
        assert e["confidence"] >= 0.95, (key, e)
    if paced:
        assert all(e["evidence"]["decided_by"] in ("s1", "s3") for e in report["endpoints"])
        assert blocking["GET /cpu/loop"]["evidence"]["s3_probe"]["probes"] >= 20
    proxy.stop()  # graceful: exit 0, nothing leaked (ASan builds check at exit)
