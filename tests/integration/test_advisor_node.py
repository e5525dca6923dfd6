"""The loop-block advisor on a Node.js (Express) app (apps/advisor_node.js): crypto.pbkdf2Sync
runs on the event loop and is flagged; crypto.pbkdf2 does the same work on libuv's thread pool
and is not, nor is a timer-based I/O route. Poisson arrivals with the probe off, then paced
arrivals with it on (a fresh proxy); each ends once its verdicts have been right for 3 polls and
it ran 12 s (at most 90 s: a starved machine gets the probe few chances). About 30 s."""
import shutil

import pytest

import advisor_support as adv

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs node (Debian nodejs)")

SPEC = {"GET /pbkdf2-sync": 5, "GET /pbkdf2-async": 5, "GET /io": 60}
EXPECTED = {"GET /pbkdf2-sync": "blocks_loop", "GET /pbkdf2-async": "ok", "GET /io": "ok"}


def test_pbkdf2_sync_blocks_and_async_does_not(procs):
    app = adv.node_app()
    procs.on_cleanup(app.stop)
    app.start()
    pids = app.pids()
    # One after the other: side by side (a second app and proxy), the probe got few requests
    # into pbkdf2Sync's tails on the loaded machine.
    for paced in (False, True):
        proxy = procs.proxy(adv.advisor_config(app.port, probe=paced))
        sc = adv.Scenario("paced-probe" if paced else "poisson-passive", proxy, SPEC, EXPECTED,
                          paced=paced)
        report = adv.run_scenarios([sc])[sc.name]
        print(f"{sc.name}: done after {sc.done_after} s\n{adv.summary(report)}")
        assert [p["pid"] for p in report["processes"]] == pids, adv.summary(report)
        sync = adv.by_path(report)["GET /pbkdf2-sync"]
        assert 3 <= sync["blocking_ms"] <= 80 and sync["confidence"] >= 0.95, adv.summary(report)
        proxy.stop()  # graceful: exit 0, nothing leaked (ASan builds check at exit)
