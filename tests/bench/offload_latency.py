#!/usr/bin/python3
"""The seed experiment: does offloading the CPU routes keep an async app's I/O route fast?

The demo app (deploy/examples/app.py, one uvicorn process) gets a fixed offered load on its I/O
route (GET /io, open loop, default 200 req/s for 10 s), first alone ("io only"), then while CPU
clients hammer GET /cpu/hash back to back ("io + cpu", default 2 clients). The ways in:

  direct           straight to the app
  proxy            through loopguard, every route to the app (quickstart-no-offload.yaml): a proxy
                   alone
  offload          through loopguard with /cpu/ offloaded to its worker pool (quickstart.yaml as
                   shipped: one worker, i.e. cores - 1 on this 2-core machine)
  offload-2workers the same with two workers: on a 2-core machine two busy workers take both
                   cores and the app's own loop has to share them (this shows the difference)
  auto             through loopguard with one catch-all route and `auto_offload: {pool: cpu}`
                   (quickstart-auto.yaml): no per-endpoint config. Before the rounds it learns:
                   the same CPU and I/O load runs until GET /advice says the CPU route is
                   offloaded, and the time that took is reported as its learning time; the
                   rounds then measure it after the learning period, next to "offload"

Rounds alternate the variants (the order rotates each round) so a noisy neighbour on a shared
machine hurts them all alike; each cell reports the median over rounds, and the ratio column is the
median over rounds of p99(io + cpu) / p99(io only). A benchmark never fails: a variant that cannot
run (say, a loopguard build without the offload pool) is reported as unavailable, with the reason.

Output: a Markdown table on stdout, and in --out-dir (default tests/bench/results/):
offload_latency-<stamp>.md / .json (every run's summary) / .png (gnuplot, if installed).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
EXAMPLES = os.path.join(ROOT, "deploy", "examples")
PROBE = os.path.join(HERE, "latency_probe.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

VARIANTS = {
    "direct": "direct to the app (uvicorn, 1 process)",
    "proxy": "through loopguard, no offload",
    "offload": "through loopguard, /cpu/ offloaded to its pool (quickstart.yaml as shipped: "
               "`workers: 1`, one core left to the app and the proxy)",
    "offload-2workers": "as offload with `workers: 2`: twice the CPU-route capacity, but the "
                        "workers take both cores and the app's loop has to share them",
    "auto": "through loopguard, one catch-all route with `auto_offload: {pool: cpu}` "
            "(quickstart-auto.yaml, same pool as offload), measured after its learning period",
}
CONFIGS = {"proxy": "quickstart-no-offload.yaml", "offload": "quickstart.yaml",
           "offload-2workers": "quickstart.yaml", "auto": "quickstart-auto.yaml"}
LEARN_DEADLINE_S = 60.0
# The auto variant's second learning load: independent clients (Poisson arrivals), as
# deploy/run-demo.sh --advise drives. argv: base URL, CPU path, seconds.
MIXED_LOAD = """
import http.client, random, sys, threading, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1]); cpu, seconds = sys.argv[2], float(sys.argv[3])
end = time.monotonic() + seconds
def client(path, rate, seed):
    rnd, conn, t = random.Random(seed), None, time.monotonic()
    while True:
        t += rnd.expovariate(rate)
        if t > end: return
        time.sleep(max(0, t - time.monotonic()))
        try:
            conn = conn or http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            conn.request("GET", path); conn.getresponse().read()
        except OSError:
            conn = None
spec = {"/io": 40, cpu: 4, "/cpu/factorial?n=30000": 4}
ts = [threading.Thread(target=client, args=(p, r / 4, i * 4 + k)) for i, (p, r) in enumerate(spec.items()) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
"""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    """(status, body) or (None, error text); never raises."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:  # noqa: BLE001 - any failure is just "not yet"
        return None, str(e).encode()


def pid_of(body):
    try:
        return json.loads(body).get("pid")
    except (ValueError, AttributeError):
        return None


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rfind(b")") + 2:].split()[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class Proc:
    """A process this script started (own session), stopped with SIGTERM then SIGKILL; whatever it
    started itself (loopguard's pool workers) is stopped too if it outlives it."""

    def __init__(self, name, cmd, cwd, log_path):
        self.name, self.log_path = name, log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(cmd, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self):
        return self.p.poll() is None

    def tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace=20.0):
        kids = descendants(self.p.pid) if self.alive() else []
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        for pid in kids:  # normally already gone: loopguard stops its workers itself
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


def wait_http(url, deadline_s, procs, want=lambda status, body: status == 200):
    deadline = time.monotonic() + deadline_s
    status, body = None, b""
    while time.monotonic() < deadline:
        status, body = http_get(url, timeout=3)
        if want(status, body):
            return True, status, body
        for p in procs:
            if not p.alive():
                return False, status, f"{p.name} exited (code {p.p.returncode})".encode()
        time.sleep(0.2)
    return False, status, body


def write_config(src, dst, app_port, proxy_port, admin_port, workers=None):
    """A copy of an example config on free ports, the pool's workdir made absolute (so it is right
    whether loopguard resolves a relative workdir against its cwd or the config's folder)."""
    with open(src) as f:
        text = f.read()
    text = (text.replace("127.0.0.1:8000", f"127.0.0.1:{app_port}")
                .replace("127.0.0.1:8080", f"127.0.0.1:{proxy_port}")
                .replace("127.0.0.1:9901", f"127.0.0.1:{admin_port}")
                .replace('workdir: "."', f'workdir: "{EXAMPLES}"'))
    if workers is not None:
        assert "    workers: 1\n" in text, "quickstart.yaml's pool no longer says `workers: 1`"
        text = text.replace("    workers: 1\n", f"    workers: {workers}\n")
        text = text.replace("max_in_flight: 1 ", f"max_in_flight: {workers} ")
    with open(dst, "w") as f:
        f.write(text)


def run_probe(args, timeout):
    out = subprocess.run([PYTHON, PROBE, *args], capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (out.stderr or out.stdout)[-400:]}


def cpu_busy(interval=1.0):
    """Share of all CPUs busy over `interval` seconds, 0..1 (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle
    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(limit, max_wait):
    """Waits (up to max_wait s) until the machine is quiet: less than `limit` of its CPU busy over
    two consecutive seconds. This script's own processes are idle then, so what is measured is
    someone else (a build, another benchmark). Returns the last busy share seen."""
    deadline = time.monotonic() + max_wait
    quiet_seconds, busy = 0, cpu_busy()
    while True:
        quiet_seconds = quiet_seconds + 1 if busy < limit else 0
        if quiet_seconds >= 2 or time.monotonic() >= deadline:
            return busy
        busy = cpu_busy()


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def machine_info(loopguard_bin):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    build_type = "?"
    cache = os.path.join(os.path.dirname(loopguard_bin), "CMakeCache.txt")
    if os.path.exists(cache):
        with open(cache) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    build_type = line.split("=", 1)[1].strip() or "?"
    version = subprocess.run([loopguard_bin, "version"], capture_output=True, text=True).stdout.strip()
    py = subprocess.run([PYTHON, "-c", "import fastapi, uvicorn, sys; print(sys.version.split()[0], "
                         "fastapi.__version__, uvicorn.__version__)"],
                        capture_output=True, text=True).stdout.split()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
        "loopguard": f"{version} ({build_type}) {loopguard_bin}",
        "python": py[0] if py else "?", "fastapi": py[1] if len(py) > 1 else "?",
        "uvicorn": py[2] if len(py) > 2 else "?",
        "loadavg_start": loadavg(),
    }


def fmt(v, digits=1):
    return "–" if v is None else f"{v:.{digits}f}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="offered load on GET /io, req/s")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpu-clients", type=int, default=2)
    ap.add_argument("--cpu-path", default="/cpu/hash")
    ap.add_argument("--variants", default="direct,proxy,offload,offload-2workers,auto",
                    help="comma-separated, of: " + ", ".join(VARIANTS))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--quiet-wait", type=float, default=120.0,
                    help="before each run, wait up to this many seconds for the machine to be "
                         "quiet (other work below --quiet-limit of the CPU); 0: do not wait")
    ap.add_argument("--quiet-limit", type=float, default=0.15)
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}")

    loopguard_bin = os.environ.get("LOOPGUARD_BIN") or os.path.join(ROOT, "build", "loopguard")
    if any(v != "direct" for v in variants) and not os.access(loopguard_bin, os.X_OK):
        log(f"no loopguard binary at {loopguard_bin}: only the direct variant runs")
        variants = [v for v in variants if v == "direct"]

    os.makedirs(args.out_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(args.out_dir, f"offload_latency-{stamp}")
    work = tempfile.mkdtemp(prefix="lg-bench-", dir="/tmp")
    info = machine_info(loopguard_bin) if os.access(loopguard_bin, os.X_OK) else {}
    ports = {"app": free_port()}
    procs, unavailable, targets, learning = [], {}, {}, {}
    app_pid = None
    try:
        log(f"starting the demo app on 127.0.0.1:{ports['app']}")
        app = Proc("app", [PYTHON, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port",
                           str(ports["app"]), "--log-level", "warning"],
                   EXAMPLES, os.path.join(work, "app.log"))
        procs.append(app)
        ok, _, body = wait_http(f"http://127.0.0.1:{ports['app']}/healthz", 30, [app])
        if not ok:
            raise SystemExit(f"the demo app did not start: {body!r}\n{app.tail()}")
        app_pid = pid_of(body)
        targets["direct"] = f"http://127.0.0.1:{ports['app']}"

        for v in variants:
            if v == "direct":
                continue
            cfg = os.path.join(work, f"{v}.yaml")
            ports[v], ports[v + "-admin"] = free_port(), free_port()
            write_config(os.path.join(EXAMPLES, CONFIGS[v]), cfg, ports["app"], ports[v],
                         ports[v + "-admin"], workers=2 if v == "offload-2workers" else None)
            log(f"starting loopguard ({v}) on 127.0.0.1:{ports[v]}")
            p = Proc(f"loopguard-{v}", [loopguard_bin, "proxy", "--config", cfg], EXAMPLES,
                     os.path.join(work, f"loopguard-{v}.log"))
            procs.append(p)
            url = f"http://127.0.0.1:{ports[v]}"
            ok, status, body = wait_http(url + "/healthz", 30, [p])
            if ok and v == "auto":
                # Ready once its pool is (GET /readyz), then it learns (see learn()).
                admin = f"http://127.0.0.1:{ports[v + '-admin']}"
                ok, status, body = wait_http(admin + "/readyz", 60, [p])
                if ok:
                    if args.quiet_wait > 0:
                        wait_quiet(args.quiet_limit, args.quiet_wait)
                    learning[v] = learn(url, admin, args)
                    ok = learning[v].get("seconds") is not None
                    body = learning[v].get("error", "").encode()
            if ok and v.startswith("offload"):
                # Ready when a /cpu/ request is answered by a pool worker (not by the app itself).
                ok, status, body = wait_http(
                    url + "/cpu/hash?iterations=1", 60, [p],
                    want=lambda s, b: s == 200 and pid_of(b) not in (None, app_pid))
            if not ok:
                reason = body.decode("utf-8", "replace")[:200] if body else f"status {status}"
                unavailable[v] = f"{reason}; its log ends: " + " / ".join(p.tail(3).splitlines())
                log(f"variant {v} unavailable: {unavailable[v]}")
                p.stop(5)
                continue
            targets[v] = url

        runnable = [v for v in variants if v in targets]
        for v in runnable:  # warm up connections, imports, worker caches
            for path in ("/io", args.cpu_path):
                for _ in range(5):
                    http_get(targets[v] + path, timeout=10)

        runs = []
        for rnd in range(args.rounds):
            order = runnable[rnd % len(runnable):] + runnable[:rnd % len(runnable)] if runnable else []
            for v in order:
                for phase in ("io", "io+cpu"):
                    busy = (wait_quiet(args.quiet_limit, args.quiet_wait) if args.quiet_wait > 0
                            else cpu_busy(0.5))
                    run = {"round": rnd + 1, "variant": v, "phase": phase, "loadavg": loadavg(),
                           "busy_before": round(busy, 3)}
                    hammer = None
                    if phase == "io+cpu":
                        hammer = subprocess.Popen(
                            [PYTHON, PROBE, "loop", targets[v] + args.cpu_path, "--clients",
                             str(args.cpu_clients), "--duration",
                             str(args.warmup + args.duration + 1.5)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                        time.sleep(1.0)  # the CPU load is on before the I/O load starts
                    run["io"] = run_probe(["rate", targets[v] + "/io", "--rate", str(args.rate),
                                           "--duration", str(args.duration), "--warmup",
                                           str(args.warmup)], timeout=args.duration + 60)
                    if hammer is not None:
                        try:
                            out, err = hammer.communicate(timeout=args.duration + 60)
                            run["cpu"] = json.loads(out.strip().splitlines()[-1])
                        except (subprocess.TimeoutExpired, ValueError, IndexError):
                            hammer.kill()
                            run["cpu"] = {"error": "hammer failed"}
                    io = run["io"]
                    cpu = run.get("cpu", {})
                    log(f"round {rnd + 1} {v:8s} {phase:7s} io p50 {fmt(io.get('p50_ms'))} "
                        f"p99 {fmt(io.get('p99_ms'))} ms {fmt(io.get('rps'))} req/s "
                        f"err {io.get('error_count', '?')}"
                        + (f" | cpu p50 {fmt(cpu.get('p50_ms'))} p99 {fmt(cpu.get('p99_ms'))} ms "
                           f"{fmt(cpu.get('rps'))} req/s err {cpu.get('error_count', '?')}"
                           if phase == "io+cpu" else "")
                        + f" (load {run['loadavg']:.2f}, cpu busy before {busy:.0%})")
                    runs.append(run)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)

    report(args, info, variants, unavailable, runs, base, learning)
    return 0


def learn(url, admin, args):
    """The auto variant's learning period: first the load of an "io+cpu" run (the CPU clients
    back to back, GET /io at --rate); if that has not moved the CPU route after LEARN_DEADLINE_S
    (an app saturated by its blocker hides it from the advisor: see docs/auto-offload.md), a mixed
    load of independent clients (GET /io 40/s, the CPU route 4/s, GET /cpu/factorial 4/s) for as
    long again. Returns the phases tried, each {"load", "seconds": from its start to the move (None:
    no move), "samples", "blocking_ms", "confidence" it moved on, "wrongly_moved"}."""
    phases = []
    for load in ("bench", "mixed"):
        phases.append(learn_under(url, admin, args, load))
        if phases[-1].get("seconds") is not None:
            break
    return {"phases": phases, "seconds": phases[-1].get("seconds"),
            "error": "; ".join(p["error"] for p in phases if "error" in p)}


def learn_under(url, admin, args, load):
    path = args.cpu_path.split("?", 1)[0]
    if load == "bench":
        log(f"auto: learning ({args.cpu_clients} clients on {args.cpu_path}, GET /io at "
            f"{args.rate:g} req/s) until GET /advice says {path} is offloaded")
        loaders = [subprocess.Popen([PYTHON, PROBE, "loop", url + args.cpu_path, "--clients",
                                     str(args.cpu_clients), "--duration", str(LEARN_DEADLINE_S)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                   subprocess.Popen([PYTHON, PROBE, "rate", url + "/io", "--rate", str(args.rate),
                                     "--duration", str(LEARN_DEADLINE_S), "--warmup", "0"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    else:
        log(f"auto: learning under mixed load (GET /io 40/s, {args.cpu_path} and /cpu/factorial "
            f"4/s each, Poisson) until GET /advice says {path} is offloaded")
        loaders = [subprocess.Popen([PYTHON, "-c", MIXED_LOAD, url, args.cpu_path,
                                     str(LEARN_DEADLINE_S)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    started = time.monotonic()
    out = {"seconds": None}
    last = None
    try:
        while time.monotonic() - started < LEARN_DEADLINE_S:
            time.sleep(0.25)
            status, body = http_get(admin + "/advice", timeout=5)
            if status != 200:
                continue
            endpoints = json.loads(body).get("endpoints", [])
            mine = [e for e in endpoints if e.get("path") == path and e.get("method") == "GET"]
            last = mine[0] if mine else last
            if mine and mine[0].get("offloaded"):
                e = mine[0]
                out = {"load": load, "seconds": round(time.monotonic() - started, 1),
                       "samples": e["samples"],
                       "blocking_ms": e["blocking_ms"], "confidence": e["confidence"],
                       "wrongly_moved": [f"{x['method']} {x['path']}" for x in endpoints
                                         if x.get("offloaded") and x is not e]}
                break
        else:
            # What the advisor said, so the table says why.
            said = "never seen"
            if last is not None:
                ev = last.get("evidence", {})
                said = (f"verdict {last['verdict']} on {last['samples']} samples, confidence "
                        f"{last['confidence']}, S1 {ev.get('s1_flush', {}).get('opinion')}, "
                        f"S2 {ev.get('s2_silence', {}).get('opinion')}, "
                        f"S3 {ev.get('s3_probe', {}).get('opinion')}")
            out["load"] = load
            out["error"] = (f"{path} not offloaded after {LEARN_DEADLINE_S:g} s of {load} load (the "
                            f"advisor: {said}; load average {loadavg():.1f})")
    finally:
        for p in loaders:
            p.kill()
            p.wait(10)
    log(f"auto: learning done: {out}")
    return out


def cell(runs, v, phase, side, key):
    return median([r.get(side, {}).get(key) for r in runs if r["variant"] == v and r["phase"] == phase])


def report(args, info, variants, unavailable, runs, base, learning):
    rows, ratios = [], {}
    for v in variants:
        if v in unavailable or not any(r["variant"] == v for r in runs):
            continue
        per_round = []
        for rnd in sorted({r["round"] for r in runs}):
            a = [r for r in runs if r["variant"] == v and r["round"] == rnd and r["phase"] == "io"]
            b = [r for r in runs if r["variant"] == v and r["round"] == rnd and r["phase"] == "io+cpu"]
            if a and b and a[0]["io"].get("p99_ms") and b[0]["io"].get("p99_ms") is not None:
                per_round.append(b[0]["io"]["p99_ms"] / a[0]["io"]["p99_ms"])
        ratios[v] = {"median": median(per_round), "per_round": [round(x, 2) for x in per_round]}
        for phase in ("io", "io+cpu"):
            rows.append({
                "variant": v, "phase": phase,
                "io_p50": cell(runs, v, phase, "io", "p50_ms"),
                "io_p99": cell(runs, v, phase, "io", "p99_ms"),
                "io_rps": cell(runs, v, phase, "io", "rps"),
                "io_err": cell(runs, v, phase, "io", "error_count"),
                "cpu_p50": cell(runs, v, phase, "cpu", "p50_ms") if phase == "io+cpu" else None,
                "cpu_p99": cell(runs, v, phase, "cpu", "p99_ms") if phase == "io+cpu" else None,
                "cpu_rps": cell(runs, v, phase, "cpu", "rps") if phase == "io+cpu" else None,
                "cpu_err": cell(runs, v, phase, "cpu", "error_count") if phase == "io+cpu" else None,
            })

    lines = [
        f"## Offload latency: GET /io at {args.rate:g} req/s offered, alone and with "
        f"{args.cpu_clients} clients on GET {args.cpu_path}",
        "",
        f"{info.get('date', '?')} · {info.get('cores', '?')} cores ({info.get('cpu', '?')}) · "
        f"Linux {info.get('kernel', '?')} · Python {info.get('python', '?')}, FastAPI "
        f"{info.get('fastapi', '?')}, uvicorn {info.get('uvicorn', '?')} · "
        f"{info.get('loopguard', '?')}",
        f"{args.rounds} rounds × {args.duration:g} s per run (after {args.warmup:g} s warm-up), "
        f"variants alternated; each cell is the median over rounds. Load average at start: "
        f"{info.get('loadavg_start', '?')}.",
        "",
        "| variant | load | I/O p50 ms | I/O p99 ms | I/O req/s | I/O errors | CPU p50 ms | CPU p99 ms "
        "| CPU req/s | I/O p99 ratio (loaded / alone) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = ""
        if row["phase"] == "io+cpu" and ratios.get(row["variant"], {}).get("median") is not None:
            r = ratios[row["variant"]]
            ratio = f"**{r['median']:.2f}×** ({', '.join(f'{x:.2f}' for x in r['per_round'])})"
        lines.append(
            f"| {row['variant']} | {'I/O only' if row['phase'] == 'io' else 'I/O + CPU'} "
            f"| {fmt(row['io_p50'])} | {fmt(row['io_p99'])} | {fmt(row['io_rps'])} "
            f"| {fmt(row['io_err'], 0)} | {fmt(row['cpu_p50'])} | {fmt(row['cpu_p99'])} "
            f"| {fmt(row['cpu_rps'])} | {ratio} |")
    auto_vs = auto_vs_explicit(runs) if "auto" in ratios and "offload" in ratios else None
    if learning.get("auto", {}).get("seconds") is not None:
        a = learning["auto"]["phases"][-1]
        tried = learning["auto"]["phases"][:-1]
        lines.append("")
        lines.append(f"**auto**: learning time {a['seconds']:g} s of the {a['load']} load"
                     + (f" (after {', '.join(p['load'] for p in tried)} load for "
                        f"{LEARN_DEADLINE_S:g} s without a move: {'; '.join(p['error'] for p in tried)})"
                        if tried else "") + " until "
                     f"GET {args.cpu_path.split('?', 1)[0]} was moved to the pool (on "
                     f"{a['samples']} samples, ~{a['blocking_ms']:g} ms blocking per request, "
                     f"confidence {a['confidence']:g}; other endpoints moved: "
                     f"{', '.join(a['wrongly_moved']) or 'none'})"
                     + (f"; after it, I/O p99 under CPU load auto / offload: "
                        f"**{auto_vs['median']:.2f}×** "
                        f"({', '.join(f'{x:.2f}' for x in auto_vs['per_round'])})."
                        if auto_vs else "."))
    noisy = [r for r in runs if r.get("busy_before", 0) >= args.quiet_limit]
    lines.append("")
    lines.append(f"Before each run the script waited (up to {args.quiet_wait:g} s) for other work on "
                 f"the machine to fall below {args.quiet_limit:.0%} of its CPU; "
                 + (f"{len(noisy)} of {len(runs)} runs started anyway on a busier machine "
                    f"(busy {', '.join(format(r['busy_before'], '.0%') for r in noisy)})."
                    if noisy else "every run started on a quiet machine."))
    lines.append("")
    for v in variants:
        lines.append(f"- **{v}**: {VARIANTS[v]}"
                     + (f" — *unavailable*: {unavailable[v]}" if v in unavailable else ""))
    lines.append("")
    lines.append("Latency is measured from the moment each request was due (open loop), so it "
                 "includes any wait caused by a stalled server. The ratio column is the median "
                 "over rounds of p99(I/O + CPU) / p99(I/O only), per-round values in brackets. "
                 "Target: ≤ 1.2× through loopguard with offload.")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(base + ".md", "w") as f:
        f.write(text)
    with open(base + ".json", "w") as f:
        json.dump({"args": vars(args), "machine": info, "unavailable": unavailable,
                   "ratios": ratios, "learning": learning, "table": rows, "runs": runs}, f,
                  indent=1)
    chart(rows, args, info, base)
    log(f"results: {base}.md, {base}.json" + (", .png" if os.path.exists(base + ".png") else ""))


def auto_vs_explicit(runs):
    """Per round, p99 of GET /io under CPU load through auto over through offload (the median and
    the per-round values); None when no round has both."""
    per_round = []
    for rnd in sorted({r["round"] for r in runs}):
        p99 = {r["variant"]: r["io"].get("p99_ms") for r in runs
               if r["round"] == rnd and r["phase"] == "io+cpu"}
        if p99.get("auto") and p99.get("offload"):
            per_round.append(p99["auto"] / p99["offload"])
    if not per_round:
        return None
    return {"median": median(per_round), "per_round": [round(x, 2) for x in per_round]}


def chart(rows, args, info, base):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot or not rows:
        if not gnuplot:
            log("gnuplot not installed (deploy/install-deps.sh --bench): no chart")
        return
    variants = []
    for row in rows:
        if row["variant"] not in variants:
            variants.append(row["variant"])
    dat = base + ".dat"
    with open(dat, "w") as f:
        f.write("# variant io_only_p50 io_only_p99 io_cpu_p50 io_cpu_p99\n")
        for v in variants:
            alone = next(r for r in rows if r["variant"] == v and r["phase"] == "io")
            loaded = next(r for r in rows if r["variant"] == v and r["phase"] == "io+cpu")
            vals = [alone["io_p50"], alone["io_p99"], loaded["io_p50"], loaded["io_p99"]]
            f.write(f'"{v}" ' + " ".join("NaN" if x is None else f"{x:.2f}" for x in vals) + "\n")
    script = f"""
set terminal pngcairo size 900,520 font "sans,10"
set output "{base}.png"
set title "GET /io at {args.rate:g} req/s: alone vs. with {args.cpu_clients} clients on {args.cpu_path}\\n{info.get('date', '')}, {info.get('cores', '?')} cores"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [1:*]
set ylabel "latency, ms (log scale)"
set grid ytics
set key top left
plot "{dat}" using 2:xtic(1) title "I/O only p50" lc rgb "#9ecae1", \\
     "" using 3 title "I/O only p99" lc rgb "#3182bd", \\
     "" using 4 title "I/O + CPU p50" lc rgb "#fdae6b", \\
     "" using 5 title "I/O + CPU p99" lc rgb "#e6550d"
"""
    r = subprocess.run([gnuplot], input=script, capture_output=True, text=True)
    if r.returncode != 0:
        log(f"gnuplot failed: {r.stderr.strip()[:300]}")


if __name__ == "__main__":
    sys.exit(main())
