"""Helpers for the loop-block advisor tests (test_advisor*.py) and its benchmark: the apps of
apps/ under uvicorn or node, a traffic driver that behaves like independent clients (Poisson
arrivals) or like load generators with a fixed rate per worker (paced), and /advice readers."""
import http.client
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import PYTHON, HarnessError

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
NODE_PATH = "/usr/share/nodejs"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """An app process (its own session, so stop() takes its workers too)."""

    def __init__(self, cmd, port, env=None, cwd=APPS, log_path=None):
        self.cmd, self.port, self.cwd = cmd, port, cwd
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.log_path = log_path or os.path.join("/tmp", f"advisor-app-{port}.log")
        self.proc = None

    def start(self, ready_path="/health", timeout=60):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"app exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", ready_path)
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise HarnessError(f"app not ready on port {self.port} in {timeout}s:\n"
                                   + self.log_text())
            time.sleep(0.1)

    def pids(self):
        """Pids of the app's processes that serve requests (uvicorn --workers: the workers)."""
        return sorted({get_json(self.port, "/health")["pid"] for _ in range(30)})

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-6000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()


def fastapi_app(workers=1, env=None):
    port = free_port()
    cmd = [PYTHON, "-m", "uvicorn", "advisor_app:app", "--host", "127.0.0.1", "--port",
           str(port), "--log-level", "warning", "--no-access-log"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return App(cmd, port, env=env)


def node_app(env=None):
    port = free_port()
    return App(["node", os.path.join(APPS, "advisor_node.js"), str(port)], port,
               env=dict(env or {}, NODE_PATH=NODE_PATH))


def get_json(port, path, method="GET", timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise HarnessError(f"{method} {path}: {r.status} {body[:300]!r}")
        return json.loads(body)
    finally:
        conn.close()


# ---- traffic ----------------------------------------------------------------------------------
UPLOAD_BODY = None


def _upload_request():
    global UPLOAD_BODY
    if UPLOAD_BODY is None:
        boundary = "advisorboundary"
        data = os.urandom(32 * 1024)
        UPLOAD_BODY = (boundary, (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                                  f"filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                                  ).encode() + data + f"\r\n--{boundary}--\r\n".encode())
    boundary, body = UPLOAD_BODY
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class Traffic:
    """Drives `spec` ({"METHOD /path": rate per second}) through port until stop(): each stream
    is split over several client threads with their own keep-alive connection. Poisson
    arrivals (paced=False) or a fixed period per thread with a random phase (paced=True).
    Records (status, latency) per stream; a failure is never retried."""

    def __init__(self, port, spec, paced=False, threads_per_stream=4, seed=1):
        self.port, self.spec, self.paced = port, spec, paced
        self.threads_per_stream = threads_per_stream
        self.rng = random.Random(seed)
        self.results = {k: [] for k in spec}
        self.errors = []
        self._stop = threading.Event()
        self._threads = []
        self._lock = threading.Lock()

    def start(self):
        for stream, rate in self.spec.items():
            for k in range(self.threads_per_stream):
                t = threading.Thread(target=self._run, daemon=True,
                                     args=(stream, rate / self.threads_per_stream,
                                           self.rng.random(), self.rng.randrange(1 << 30)))
                t.start()
                self._threads.append(t)
        return self

    def _run(self, stream, rate, phase, seed):
        rnd = random.Random(seed)
        method, path = stream.split(" ", 1)
        period = 1.0 / rate
        conn = None
        next_at = time.monotonic() + (phase * period if self.paced else rnd.expovariate(rate))
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            next_at += period if self.paced else rnd.expovariate(rate)
            body, headers = (None, {})
            if path.startswith("/upload"):
                body, headers = _upload_request()
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                status = r.status
            except OSError as e:
                conn = None
                with self._lock:
                    self.errors.append((stream, repr(e)))
                continue
            with self._lock:
                self.results[stream].append((status, time.monotonic() - t0))
            if status != 200:
                with self._lock:
                    self.errors.append((stream, status))

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(70)
        return self

    def counts(self):
        with self._lock:
            return {k: len(v) for k, v in self.results.items()}


def advice(admin_port):
    return get_json(admin_port, "/advice")


def by_path(report):
    """{"METHOD /path": endpoint} of an /advice report."""
    return {f"{e['method']} {e['path']}": e for e in report["endpoints"]}


def summary(report):
    """One line per endpoint, for failure messages and the benchmark's log."""
    lines = [f"observed {report['observed_s']}s, {report['observed_requests']} requests, "
             f"processes {[(p['pid'], p['completions']) for p in report['processes']]}"]
    for e in report["endpoints"]:
        ev = e["evidence"]
        s1, s2, s3 = ev["s1_flush"], ev["s2_silence"], ev["s3_probe"]
        lines.append(
            f"  {e['method']} {e['path']:22s} n={e['samples']:4d} {e['verdict']:15s} "
            f"blk={e['blocking_ms']:6.2f} conf={e['confidence']:.3f} base={ev['base_ms']:.1f} | "
            f"S1 {s1['opinion']} r={s1['blamed_per_request']:.3f} bg={s1['background_per_request']:.3f} "
            f"expl={s1.get('explained', 0):.2f} stall={s1['stall_ms']} | S2 {s2['opinion']} "
            f"{s2['silence_rate']:.2f}/{s2['expected_rate']:.2f} | S3 {s3['opinion']} "
            f"probes={s3['probes']} lagged={s3['lagged_rate']:.2f}/{s3['background_rate']:.2f} | "
            f"{'; '.join(e['notes'])}")
    return "\n".join(lines)


# ---- the checks shared by the advisor tests ------------------------------------------------
def advisor_config(app_port, probe=False, extra_routes=(), pools=None, probe_path="/health",
                   max_in_flight=1000):
    """One catch-all upstream route to the app, the admin API on, advice with or without the
    probe (plus any routes placed ahead of it, and pools)."""
    routes = list(extra_routes) + [{"name": "app", "match": {"prefix": "/"}, "upstream": "app",
                                    "limits": {"max_in_flight": max_in_flight}}]
    top = {"admin": {"listen": "127.0.0.1:0"}, "log": {"access_log": False},
           "advice": {"probe": probe, "probe_path": probe_path}}
    if pools:
        top["pools"] = pools
    return harness.proxy_config({"app": {"endpoints": [f"127.0.0.1:{app_port}"]}}, routes, **top)


def run_and_judge(proxy, spec, expected, paced, duration, poll_every=5.0, min_samples=30):
    """Drives `spec` through the proxy for `duration` seconds, polling /advice. Returns the
    final report. Fails if a request failed, if an endpoint expected "ok" was ever reported
    blocks_loop, or if the final verdict of any endpoint is not the expected one (with at least
    min_samples samples)."""
    traffic = Traffic(proxy.port, spec, paced=paced).start()
    false_alarms = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < duration:
            time.sleep(min(poll_every, max(0.0, duration - (time.monotonic() - started))))
            seen = by_path(advice(proxy.admin_port))
            for key, want in expected.items():
                e = seen.get(key)
                if want == "ok" and e is not None and e["verdict"] == "blocks_loop":
                    false_alarms.append((round(time.monotonic() - started, 1), key, e["samples"]))
    finally:
        traffic.stop()
    report = advice(proxy.admin_port)
    text = summary(report)
    assert not traffic.errors, f"requests failed: {traffic.errors[:5]}\n{text}"
    assert not false_alarms, f"waiting endpoints reported as blocking: {false_alarms}\n{text}"
    seen = by_path(report)
    wrong = []
    for key, want in expected.items():
        e = seen.get(key)
        if e is None or e["samples"] < min_samples or e["verdict"] != want:
            wrong.append((key, want, e and e["verdict"], e and e["samples"]))
    assert not wrong, f"wrong verdicts (endpoint, expected, got, samples): {wrong}\n{text}"
    return report


def get_text(port, path, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.read().decode()
    finally:
        conn.close()


def status_of(port, path, method="GET", timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()
