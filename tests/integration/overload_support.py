"""Helpers for the overload tests (test_adaptive_limits.py) and the overload benchmark:

  start_app(procs, ...)      apps/overload_app.py as a child process (killed at cleanup)
  capacity(port, path, ...)  closed-loop requests per second a route serves now
  open_loop(port, phases)    open-loop load: request i of a phase is due at start + i/rate,
                             whatever happened to the others (no coordinated omission); latency
                             runs from the moment a request was due to its last response byte
  MetricsSampler             scrapes /metrics in the background (limits over time)
  summarize(results, ...)    goodput within an SLO, served p50/p99, refusals by reason
"""
import asyncio
import math
import os
import re
import subprocess
import sys
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "apps", "overload_app.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class App:
    """A running overload_app.py; .port, .stats(), .reset()."""

    def __init__(self, proc, port):
        self.proc = proc
        self.port = port
        self.address = f"127.0.0.1:{port}"

    def stats(self):
        return harness.http_request(self.port, "GET", "/stats", timeout=10).json()

    def reset(self):
        harness.http_request(self.port, "GET", "/reset", timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_app(procs, pool=4, ms=20, timeout=10):
    proc = subprocess.Popen([PYTHON, APP, "--port", "0", "--pool", str(pool), "--ms", str(ms)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, text=True)
    app = None
    procs.on_cleanup(lambda: app.stop() if app else (proc.kill(), proc.wait(10)))
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            app = App(proc, int(m.group(1)))
            return app
        if proc.poll() is not None:
            break
    raise harness.HarnessError(f"overload_app did not start: {line!r} {proc.stderr.read()}")


# ---- load -------------------------------------------------------------------------------------


class Result:
    __slots__ = ("phase", "due", "latency", "status", "reason")

    def __init__(self, phase, due, latency, status, reason):
        self.phase, self.due, self.latency, self.status, self.reason = \
            phase, due, latency, status, reason


async def _request(pool, port, path, timeout):
    """(status, overload reason) of one GET over a pooled keep-alive connection."""
    conn = pool.pop() if pool else None
    if conn is None:
        conn = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = conn
    try:
        return await _exchange(pool, conn, path, timeout)
    except BaseException:
        writer.close()  # a client that gives up hangs up (and the proxy forgets the request)
        raise


async def _exchange(pool, conn, path, timeout):
    reader, writer = conn
    writer.write(f"GET {path} HTTP/1.1\r\nHost: lg.test\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, reason, close = 0, None, False
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k, v = k.strip().lower(), v.strip()
        if k == "content-length":
            length = int(v)
        elif k == "x-loopguard-overload":
            reason = v
        elif k == "connection" and v.lower() == "close":
            close = True
    if length:
        await asyncio.wait_for(reader.readexactly(length), timeout)
    if close:
        writer.close()
    else:
        pool.append(conn)
    return status, reason


async def _open_loop(port, phases, timeout):
    pool = []
    results = []
    tasks = []
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(phase, due_at, path):
        try:
            status, reason = await _request(pool, port, path, timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            status, reason = None, type(e).__name__
        results.append(Result(phase, due_at - start, loop.time() - due_at, status, reason))

    phase_start = start
    for index, (path, rate, duration) in enumerate(phases):
        n = int(rate * duration)
        for i in range(n):
            due_at = phase_start + i / rate
            delay = due_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(index, due_at, path)))
        phase_start += duration
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 5)
    for _, writer in pool:
        writer.close()
    return results


def open_loop(port, phases, timeout=40):
    """phases: [(path, rate, seconds), ...] one after the other. Returns [Result] (every request
    sent, answered or not; status None for a failure, reason then names it)."""
    return asyncio.run(_open_loop(port, phases, timeout))


def capacity(port, path, clients=2, seconds=3.0):
    """Closed loop: requests answered per second with `clients` back to back."""
    async def run():
        pool = []
        done = 0
        end = asyncio.get_running_loop().time() + seconds

        async def client():
            nonlocal done
            while asyncio.get_running_loop().time() < end:
                status, _ = await _request(pool, port, path, 10)
                if status == 200:
                    done += 1
        await asyncio.gather(*(client() for _ in range(clients)))
        for _, writer in pool:
            writer.close()
        return done / seconds
    return asyncio.run(run())


# ---- metrics ----------------------------------------------------------------------------------


def scrape(admin_port):
    """{(name, ((label, value), ...)): value} of every sample of /metrics."""
    text = harness.http_request(admin_port, "GET", "/metrics", timeout=10).body.decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


class MetricsSampler(threading.Thread):
    """Scrapes /metrics every `every` seconds until stop(); .series holds (t, samples)."""

    def __init__(self, admin_port, every=0.25):
        super().__init__(daemon=True)
        self.admin_port, self.every = admin_port, every
        self.series = []
        self._halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        while not self._halt.is_set():
            try:
                self.series.append((time.monotonic() - self.t0, scrape(self.admin_port)))
            except Exception:  # noqa: BLE001 - a missed scrape is just a gap
                pass
            self._halt.wait(self.every)

    def stop(self):
        self._halt.set()
        self.join(10)

    def values(self, name, since=0.0, until=math.inf, **labels):
        return [metric(s, name, **labels) for t, s in self.series
                if since <= t <= until and metric(s, name, **labels) is not None]


# ---- summaries --------------------------------------------------------------------------------


def percentile(values, q):
    """Nearest rank; None when empty."""
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values), max(1, math.ceil(q * len(values)))) - 1]


def summarize(results, window, slo=1.0):
    """Over the requests due in [window[0], window[1]) seconds: goodput (200s within `slo` per
    second of the window), served (200) p50/p99, answers other than 200 by overload reason (or
    status), and requests that got no answer (the client gave up, a reset) by what happened."""
    lo, hi = window
    mine = [r for r in results if lo <= r.due < hi]
    served = [r.latency for r in mine if r.status == 200]
    reasons, failed = {}, {}
    for r in mine:
        if r.status is None:
            failed[r.reason] = failed.get(r.reason, 0) + 1
        elif r.status != 200:
            reasons[r.reason or str(r.status)] = reasons.get(r.reason or str(r.status), 0) + 1
    return {
        "sent": len(mine),
        "served": len(served),
        "goodput": sum(1 for x in served if x <= slo) / (hi - lo),
        "p50": percentile(served, 0.50),
        "p99": percentile(served, 0.99),
        "refused": reasons,
        "failed": failed,
        "refusal_latency_max": max((r.latency for r in mine if r.status not in (200, None)),
                                   default=None),
    }
