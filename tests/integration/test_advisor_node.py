"""The loop-block advisor on a Node.js (Express) app (apps/advisor_node.js): crypto.pbkdf2Sync
runs on the event loop and is flagged; crypto.pbkdf2 does the same work on libuv's thread pool
and is not, nor is a timer-based I/O route. Poisson arrivals with the probe off, paced arrivals
with it on; 25 s each, about a minute in all."""
import shutil

import pytest

import advisor_support as adv

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs node (Debian nodejs)")

SPEC = {"GET /pbkdf2-sync": 5, "GET /pbkdf2-async": 5, "GET /io": 60}
EXPECTED = {"GET /pbkdf2-sync": "blocks_loop", "GET /pbkdf2-async": "ok", "GET /io": "ok"}


@pytest.fixture(scope="module")
def app():
    a = adv.node_app()
    a.start()
    yield a
    a.stop()


@pytest.mark.parametrize("paced", [False, True], ids=["poisson-passive", "paced-probe"])
def test_pbkdf2_sync_blocks_and_async_does_not(procs, app, paced):
    proxy = procs.proxy(adv.advisor_config(app.port, probe=paced))
    report = adv.run_and_judge(proxy, SPEC, EXPECTED, paced=paced, duration=25.0)
    assert [p["pid"] for p in report["processes"]] == app.pids(), adv.summary(report)
    sync = adv.by_path(report)["GET /pbkdf2-sync"]
    assert 3 <= sync["blocking_ms"] <= 80 and sync["confidence"] >= 0.95, adv.summary(report)
    proxy.stop()  # graceful: exit 0, nothing leaked (ASan builds check at exit)
