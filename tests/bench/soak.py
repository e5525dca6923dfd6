#!/usr/bin/env python3
"""Soak: a long run (default 10 minutes, --minutes N) of mixed traffic against loopguard with a
fake upstream and a small offload pool, and a config reload every 30 s (SIGHUP and POST /reload
by turns, between two configs). Every few seconds it samples the proxy's RSS, open fds, its
connection gauges and its workers' RSS; at the end it reports how each grew per hour (after a
warm-up) and every request by outcome: none may be lost.

Traffic (8 client threads, raw sockets, keep-alive where the op allows it):
  get / post / chunked     ordinary requests to the upstream (echo: the body must come back whole)
  pool                     a 3 ms CPU request to the offload pool (2 workers)
  slow reader              1 MiB read in 16 KiB steps every 20 ms
  abort request            a head announcing 64 KiB, 1 KiB of it, then the client hangs up
  abort response           1 MiB asked for, 16 KiB read, then the client hangs up
  upstream reset           the upstream closes before answering (502 expected)
  upstream cut             the upstream closes half way through its body (a cut response expected)

Outcomes: ok; refused (a 503 with X-Loopguard-Overload: a documented refusal); expected (the
502 or the cut an upstream reset must produce); aborted (the client hung up on purpose); lost
(anything else: no answer, a wrong status, a short or wrong body). Lost must be 0.

  tests/bench/soak.sh [--minutes 10] [--sample 5] [--reload-every 30] [--clients 8] [--rate 200]
Environment: LOOPGUARD_BIN (default build-bench/loopguard, else build/loopguard). Table on
stdout; .md/.json/.dat/.png in tests/bench/results/, the chart also in tests/bench/charts/.
"""
import argparse
import collections
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import benchlib as bl

sys.path.insert(0, os.path.join(bl.ROOT, "tests", "integration"))
from harness import ConnectionClosed, HarnessError, RawConn, build_request, chunked_body  # noqa: E402

FAKE_UPSTREAM = os.path.join(bl.ROOT, "tests", "integration", "fake_upstream.py")
WORKER = os.path.join(bl.ROOT, "tests", "integration", "workers", "test_worker.py")
MiB = 1024 * 1024

# (op, weight) for the mixed clients; the slow reader has a thread of its own.
MIX = [("get", 40), ("post", 12), ("chunked", 8), ("pool", 15), ("abort request", 5),
       ("abort response", 5), ("upstream reset", 4), ("upstream cut", 4)]


# ---------------------------------------------------------------- set-up

def config(port, upstream, version):
    """The two configs the reloads alternate between differ in limits and timeouts."""
    in_flight = 64 if version == "a" else 48
    return f"""listen: "127.0.0.1:{port}"
admin: {{listen: "127.0.0.1:0"}}
log: {{access_log: false, level: info}}
timeouts: {{header: 10s, idle: {"30s" if version == "a" else "20s"}}}
upstreams:
  app:
    endpoints: ["127.0.0.1:{upstream}"]
    max_idle_connections: 16
pools:
  cpu:
    command: ["{bl.PYTHON}", "{WORKER}", "--uds", "{{socket}}"]
    workers: 2
    ready: {{path: /ready, timeout: 10s}}
routes:
  - name: cpu
    match: {{prefix: /cpu/}}
    pool: cpu
    limits: {{max_in_flight: 2, max_queue: 64, queue_timeout: 10s}}
  - name: api
    match: {{prefix: /}}
    upstream: app
    limits: {{max_in_flight: {in_flight}, max_queue: 256, queue_timeout: 10s}}
"""


def start_upstream(procs, work):
    log = open(os.path.join(work, "upstream.log"), "wb")
    p = procs.start([bl.PYTHON, FAKE_UPSTREAM, "--port", "0", "--name", "app"],
                    stdout=subprocess.PIPE, stderr=log)
    line = p.stdout.readline()
    if not line:
        raise RuntimeError("the fake upstream did not start")
    return json.loads(line)["port"]


class Loopguard:
    def __init__(self, procs, work, upstream_port):
        self.work = work
        self.port = bl.free_port()
        self.upstream_port = upstream_port
        self.path = os.path.join(work, "loopguard.yaml")
        self.version = "a"
        self.write(self.version)
        binary = bl.loopguard_bin()
        if not binary:
            raise RuntimeError("no loopguard binary (set LOOPGUARD_BIN or build build-bench/)")
        self.stderr_path = os.path.join(work, "loopguard.stderr")
        self.proc = procs.start([binary, "proxy", "--config", self.path],
                                stderr=open(self.stderr_path, "wb"))
        self.admin = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.admin is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"loopguard exited: {bl._tail(self.stderr_path)}")
            m = re.search(r"admin listening on 127\.0\.0\.1:(\d+)", open(self.stderr_path).read())
            if m and "listening on 127.0.0.1:%d" % self.port in open(self.stderr_path).read():
                self.admin = int(m.group(1))
            time.sleep(0.05)
        if self.admin is None:
            raise RuntimeError(f"loopguard did not start: {bl._tail(self.stderr_path)}")
        ok, why = bl.wait_http(self.admin, "/readyz", timeout=20, proc=self.proc)
        if not ok:
            raise RuntimeError(f"pool not ready: {why}")

    def write(self, version):
        with open(self.path + ".tmp", "w") as f:
            f.write(config(self.port, self.upstream_port, version))
        os.replace(self.path + ".tmp", self.path)

    def metrics(self):
        status, body = bl.http_get(self.admin, "/metrics", timeout=3)
        return body.decode(errors="replace") if status == 200 else ""

    def reload(self, how):
        """Switches to the other config by SIGHUP or POST /reload; True once it is applied."""
        before = reload_count(self.metrics())
        self.version = "b" if self.version == "a" else "a"
        self.write(self.version)
        if how == "SIGHUP":
            self.proc.send_signal(signal.SIGHUP)
        else:
            try:
                with RawConn(self.admin, timeout=5) as c:
                    c.send(build_request("POST", "/reload", [("Connection", "close")]))
                    if c.read_response(timeout=5).status != 200:
                        return False
            except (OSError, HarnessError):
                return False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if reload_count(self.metrics()) > before:
                return True
            time.sleep(0.05)
        return False


def reload_count(metrics):
    m = re.search(r'^loopguard_config_reloads_total\{result="ok"\} (\d+)', metrics, re.M)
    return int(m.group(1)) if m else 0


def gauge(metrics, name, **labels):
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{name}\{{{re.escape(sel)}\}} " if labels else rf"^{name} "
    m = re.search(pattern + r"([-0-9.e+]+)", metrics, re.M)
    return float(m.group(1)) if m else None


# ---------------------------------------------------------------- traffic

class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()  # (op, outcome) -> n
        self.lost_examples = []

    def add(self, op, outcome, detail=""):
        with self.lock:
            self.counts[(op, outcome)] += 1
            if outcome == "lost" and len(self.lost_examples) < 20:
                self.lost_examples.append(f"{op}: {detail}")


def is_refusal(resp):
    return resp.status == 503 and resp.header("x-loopguard-overload") is not None


class Client(threading.Thread):
    def __init__(self, port, tally, stop, seed, slow=False, rate=0.0):
        super().__init__(daemon=True)
        self.port, self.tally, self.stop, self.slow = port, tally, stop, slow
        self.interval = 1.0 / rate if rate > 0 else 0.0  # seconds between this client's ops
        self.rng = random.Random(seed)
        self.conn = None
        self.used = 0

    def keepalive(self):
        if self.conn is None or self.used >= 25:
            self.drop()
            self.conn = RawConn(self.port, timeout=10)
            self.used = 0
        self.used += 1
        return self.conn

    def drop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self):
        ops, weights = zip(*MIX)
        next_op = time.monotonic()
        while not self.stop.is_set():
            if self.interval and not self.slow:
                next_op += self.interval
                delay = next_op - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    break
                next_op = max(next_op, time.monotonic() - 1.0)  # a stall is not made up in a burst
            op = "slow reader" if self.slow else self.rng.choices(ops, weights)[0]
            try:
                outcome, detail = getattr(self, "op_" + op.replace(" ", "_"))()
            except (OSError, HarnessError) as e:
                outcome, detail = "lost", f"{type(e).__name__}: {e}"
                self.drop()
            self.tally.add(op, outcome, detail)
        self.drop()

    # Each op returns (outcome, detail).
    def exchange(self, raw, check, method="GET"):
        c = self.keepalive()
        c.send(raw)
        try:
            resp = c.read_response(timeout=20, method=method)
        except ConnectionClosed as e:
            self.drop()
            return "lost", f"no response: {e}"
        if resp.header("connection") == "close":
            self.drop()
        if is_refusal(resp):
            return "refused", ""
        return check(resp)

    def op_get(self):
        n = self.rng.randrange(100000)
        return self.exchange(build_request("GET", f"/api/echo?n={n}"), lambda r: (
            ("ok", "") if r.status == 200 and r.json()["query"] == f"n={n}" else ("lost", repr(r))))

    def _echo_check(self, body):
        want = hashlib.sha256(body).hexdigest()

        def check(r):
            if r.status == 200 and r.json()["body_sha256"] == want:
                return "ok", ""
            return "lost", repr(r)
        return check

    def op_post(self):
        body = os.urandom(self.rng.choice([10, 1000, 20000]))
        return self.exchange(build_request("POST", "/api/echo", body=body), self._echo_check(body),
                             method="POST")

    def op_chunked(self):
        body = os.urandom(self.rng.choice([10, 5000, 40000]))
        cut = self.rng.randrange(len(body))
        raw = build_request("POST", "/api/echo", [("Transfer-Encoding", "chunked")]) + \
            chunked_body([body[:cut], body[cut:]])
        return self.exchange(raw, self._echo_check(body), method="POST")

    def op_pool(self):
        return self.exchange(build_request("GET", "/cpu/work?ms=3"), lambda r: (
            ("ok", "") if r.status == 200 and "pid" in r.json() else ("lost", repr(r))))

    def op_upstream_reset(self):
        def check(r):
            if r.status == 502:
                return "expected", ""
            return "lost", repr(r)
        return self.exchange(build_request("GET", "/api/reset"), check)

    def op_upstream_cut(self):
        c = self.keepalive()
        c.send(build_request("GET", "/api/reset?when=partial&n=50000"))
        try:
            resp = c.read_response(timeout=20)
        except ConnectionClosed:
            self.drop()
            return "expected", ""  # the head came, then the cut: the client sees a short body
        self.drop()
        if is_refusal(resp):
            return "refused", ""
        return "lost", f"a cut upstream response arrived whole or wrong: {resp!r}"

    def op_abort_request(self):
        with RawConn(self.port, timeout=10) as c:
            c.send(build_request("POST", "/api/echo", [("Content-Length", "65536")]) + b"x" * 1024)
            c.hang_up()
        return "aborted", ""

    def op_abort_response(self):
        with RawConn(self.port, timeout=10) as c:
            c.send(build_request("GET", "/api/bytes?n=1048576"))
            c.read_head(timeout=20)
            c.read_exact(16384, timeout=20)
            c.hang_up()
        return "aborted", ""

    def op_slow_reader(self):
        with RawConn(self.port, timeout=30) as c:
            c.send(build_request("GET", "/api/bytes?n=1048576", [("Connection", "close")]))
            _, status, _, headers = c.read_head(timeout=20)
            if status == 503:
                return "refused", ""
            got = 0
            while got < 1048576 and not self.stop.is_set():
                got += len(c.read_exact(min(16384, 1048576 - got), timeout=20))
                time.sleep(0.02)
            if got < 1048576:
                return "aborted", ""  # the run ended under it
            return ("ok", "") if status == 200 else ("lost", f"status {status}")


# ---------------------------------------------------------------- sampling

def sample(lg, t0):
    pid = lg.proc.pid
    m = lg.metrics()
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = None
    workers = sum(bl.status_kib(p, "VmRSS") or 0 for p in bl.children_of(pid))
    return {"t": time.monotonic() - t0, "rss_kib": bl.status_kib(pid, "VmRSS"), "fds": fds,
            "client_conns": gauge(m, "loopguard_connections", side="client"),
            "upstream_conns": gauge(m, "loopguard_connections", side="upstream"),
            "workers_rss_kib": workers,
            "in_flight": gauge(m, "loopguard_route_in_flight", route="api"),
            "lag_ms": (gauge(m, "loopguard_event_loop_lag_seconds") or 0) * 1000}


def slope_per_hour(points):
    """Least-squares slope of (t seconds, value) points, per hour."""
    pts = [(t, v) for t, v in points if v is not None]
    if len(pts) < 3:
        return None
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    den = sum((t - mt) ** 2 for t, _ in pts)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in pts) / den * 3600


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--sample", type=float, default=5, help="seconds between samples (5)")
    ap.add_argument("--reload-every", type=float, default=30, help="seconds (30)")
    ap.add_argument("--clients", type=int, default=8, help="client threads, one a slow reader")
    ap.add_argument("--rate", type=float, default=200,
                    help="requests per second of the mixed clients together (200; 0: as fast as "
                         "they go). The machine is shared: keep it modest")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds left out of the growth fit (default: 10%% of the run, ≥ 30)")
    ap.add_argument("--out-dir", default=bl.RESULTS)
    args = ap.parse_args()
    bl.RESULTS = args.out_dir
    seconds = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else max(30.0, seconds * 0.1)
    bl.set_budget(seconds + 180)
    info = bl.machine_info()
    info["pinning"] = False  # nothing is pinned: a soak is about drift, not speed
    binary = bl.loopguard_bin()
    bl.log(f"soak: {args.minutes:g} min, {args.clients} clients, reload every "
           f"{args.reload_every:g} s; loopguard: {bl.describe_binary(binary)}")

    procs = bl.Procs()
    work = procs.workdir("soak")
    tally = Tally()
    samples, reloads = [], []
    stop = threading.Event()
    lg = None
    try:
        up = start_upstream(procs, work)
        lg = Loopguard(procs, work, up)
        t0 = time.monotonic()
        samples.append(sample(lg, t0))
        per_client = args.rate / max(1, args.clients - 1)
        clients = [Client(lg.port, tally, stop, seed=i, slow=(i == 0), rate=per_client)
                   for i in range(args.clients)]
        for c in clients:
            c.start()
        next_sample = t0 + args.sample
        next_reload = t0 + args.reload_every
        how = "SIGHUP"
        while time.monotonic() - t0 < seconds:
            now = time.monotonic()
            if now >= next_reload:
                ok = lg.reload(how)
                reloads.append({"t": now - t0, "how": how, "ok": ok})
                bl.log(f"reload by {how}: {'applied' if ok else 'FAILED'} (config {lg.version})")
                how = "POST /reload" if how == "SIGHUP" else "SIGHUP"
                next_reload += args.reload_every
            if now >= next_sample:
                s = sample(lg, t0)
                samples.append(s)
                next_sample += args.sample
                if len(samples) % 12 == 0:
                    done = sum(tally.counts.values())
                    bl.log(f"{s['t']:.0f} s: {done} requests, RSS {s['rss_kib']} KiB, "
                           f"{s['fds']} fds, {s['client_conns']} client conns")
            if lg.proc.poll() is not None:
                bl.log(f"loopguard exited with {lg.proc.returncode}")
                break
            time.sleep(0.1)
        stop.set()
        for c in clients:
            c.join(timeout=30)
        # Idle: what is left once the clients are gone.
        time.sleep(2)
        idle = sample(lg, t0)
        idle["idle"] = True
        samples.append(idle)
    except bl.BudgetExceeded as e:
        bl.log(f"stopping early: {e}")
        stop.set()
    except RuntimeError as e:
        bl.log(f"setup failed: {e}")
        procs.cleanup()
        return 2
    finally:
        alive = lg is not None and lg.proc.poll() is None
        procs.cleanup()
        signal.alarm(0)
    report(args, info, binary, tally, samples, reloads, warmup, alive)
    return 0


def report(args, info, binary, tally, samples, reloads, warmup, alive):
    # Outcomes.
    outcomes = ["ok", "refused", "expected", "aborted", "lost"]
    ops = [op for op, _ in MIX] + ["slow reader"]
    rows = []
    total = collections.Counter()
    for op in ops:
        row = [op] + [bl.fmt(tally.counts.get((op, o), 0)) for o in outcomes]
        for o in outcomes:
            total[o] += tally.counts.get((op, o), 0)
        rows.append(row)
    rows.append(["**all**"] + [f"**{bl.fmt(total[o])}**" for o in outcomes])
    md_outcomes = bl.markdown_table(["request"] + outcomes, rows)

    # Growth.
    running = [s for s in samples if not s.get("idle") and s["t"] >= warmup]
    idle = next((s for s in samples if s.get("idle")), None)
    first = running[0] if running else None
    series = [("RSS (MiB)", "rss_kib", 1 / 1024), ("open fds", "fds", 1),
              ("client connections", "client_conns", 1), ("upstream connections", "upstream_conns", 1),
              ("workers' RSS (MiB)", "workers_rss_kib", 1 / 1024)]
    grow_rows, summary = [], {}
    for label, key, scale in series:
        vals = [s[key] * scale for s in running if s[key] is not None]
        if not vals:
            continue
        per_hour = slope_per_hour([(s["t"], s[key] * scale if s[key] is not None else None)
                                   for s in running])
        mean = sum(vals) / len(vals)
        summary[key] = {"first": vals[0], "last": vals[-1], "min": min(vals), "max": max(vals),
                        "mean": mean, "per_hour": per_hour,
                        "idle_end": idle[key] * scale if idle and idle[key] is not None else None}
        grow_rows.append([label, bl.fmt(vals[0], 1), bl.fmt(min(vals), 1), bl.fmt(max(vals), 1),
                          bl.fmt(vals[-1], 1), bl.fmt(per_hour, 1),
                          bl.fmt(summary[key]["idle_end"], 1)])
    md_growth = bl.markdown_table(["sampled", f"at {first['t']:.0f} s" if first else "first",
                                   "min", "max", "last", "growth / hour", "idle at end"],
                                  grow_rows)
    ok_reloads = sum(1 for r in reloads if r["ok"])
    lag = [s["lag_ms"] for s in running if s["lag_ms"] is not None]
    header = bl.report_header("soak", info, binary, "nothing pinned", [
        f"{args.minutes:g} min, {args.clients} client threads (1 slow reader; the others "
        f"{args.rate:g} requests/s together), a reload every "
        f"{args.reload_every:g} s ({ok_reloads}/{len(reloads)} applied, SIGHUP and POST /reload "
        f"by turns); samples every {args.sample:g} s; growth / hour is the least-squares slope "
        f"after a {warmup:.0f} s warm-up; idle at end: 2 s after the clients stopped.",
        f"Event loop lag while sampling: median {bl.fmt(bl.median(lag), 1)} ms, max "
        f"{bl.fmt(max(lag) if lag else None, 1)} ms. loopguard "
        + ("was still running at the end." if alive else "**had exited before the end**."),
        "",
        f"**{bl.fmt(total['lost'])} requests lost** of {bl.fmt(sum(total.values()))}."
        + (" Examples: " + "; ".join(tally.lost_examples[:5]) if tally.lost_examples else ""),
    ])
    md = md_outcomes + "\n\n" + md_growth
    data = {"machine": info, "args": vars(args), "outcomes": {f"{k[0]}|{k[1]}": v for k, v in
                                                               tally.counts.items()},
            "lost_examples": tally.lost_examples, "growth": summary, "reloads": reloads,
            "samples": samples}
    bl.publish("soak", header, md, data, lambda base: chart(samples, reloads, base))


def chart(samples, reloads, base):
    pts = [s for s in samples if not s.get("idle") and s["rss_kib"] is not None]
    if len(pts) < 2:
        return
    with open(base + ".dat", "w") as f:
        f.write("# t_s rss_mib fds client_conns upstream_conns\n")
        for s in pts:
            f.write(f"{s['t']:.1f} {s['rss_kib'] / 1024:.2f} {s['fds'] or 0} "
                    f"{s['client_conns'] or 0} {s['upstream_conns'] or 0}\n")
    arrows = "\n".join(f"set arrow from {r['t'] / 60:.2f}, graph 0 to {r['t'] / 60:.2f}, graph 1 "
                       f"nohead lc rgb '#dddddd'" for r in reloads)
    script = f"""set terminal pngcairo size 900,450 font "sans,10"
set output '{base}.png'
set title "loopguard soak: RSS, open fds and connections (grey: config reloads)"
set xlabel "minutes"
set ylabel "RSS (MiB)"
set y2label "fds / connections"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set grid
set key bottom right opaque box
{arrows}
plot '{base}.dat' using ($1/60):2 with lines lw 2 lc rgb '#4c72b0' title "RSS (MiB)", \\
     '' using ($1/60):3 axes x1y2 with lines lc rgb '#dd8452' title "open fds", \\
     '' using ($1/60):4 axes x1y2 with lines lc rgb '#55a868' title "client connections", \\
     '' using ($1/60):5 axes x1y2 with lines lc rgb '#c44e52' title "upstream connections"
"""
    if bl.gnuplot(script, "soak") and os.path.exists(base + ".png"):
        charts = os.path.join(bl.HERE, "charts")
        os.makedirs(charts, exist_ok=True)
        shutil.copy(base + ".png", os.path.join(charts, "soak.png"))


if __name__ == "__main__":
    sys.exit(main())
