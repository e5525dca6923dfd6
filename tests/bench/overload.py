#!/usr/bin/python3
"""Overload that stays fast: goodput and latency of a CPU-bound endpoint offered 0.5x to 3x its
capacity, open loop, through loopguard's queue orders and limits, and HAProxy as the anchor.

The app is tests/integration/apps/overload_app.py (one asyncio process): GET /cpu blocks its event
loop for 20 ms of wall time (capacity ~1000/20 req/s minus the app's own overhead; measured at the
start of the run, closed loop, and every offered load is relative to that). Each cell: a fresh
proxy, `--duration` seconds of open-loop load (request i due at start + i/rate, no coordinated
omission), the first `--warmup` seconds not counted. A client gives up after `--client-timeout`
and hangs up (counted as "timed out"; the proxy forgets the request).

Variants (every loopguard one with the naive bounds of the issue, max_queue 10000 and
queue_timeout 30s):

  fifo-N        max_in_flight N (--fixed, default 2), queue_order fifo (the default)
  lifo-N        max_in_flight N, queue_order lifo
  adaptive-N    max_in_flight N, queue_order adaptive
  auto-fifo     max_in_flight auto, queue_order fifo
  auto-adaptive max_in_flight auto, queue_order adaptive
  haproxy       HAProxy, server maxconn N + maxqueue 10000, timeout queue 30s

Columns: goodput = responses 200 within the SLO (--slo, default 1 s) per second of the measured
window, also as a multiple of the capacity; served p50/p99 = latency of the 200s (from the moment
each request was due); refused = proxy answers other than 200 (by overload reason); timed out =
clients that gave up. Placement: the app alone on CPU 0 (it is the bottleneck by construction);
the proxy and this driver (the load generator) on CPU 1.

Output: a Markdown table on stdout and tests/bench/results/overload-<stamp>.{md,json,dat,png}.
"""
import argparse
import json
import os
import re
import sys
import time

import benchlib as bl

sys.path.insert(0, os.path.join(bl.ROOT, "tests", "integration"))
import overload_support as ov  # noqa: E402  (the load generator and summaries the tests use)

APP = os.path.join(bl.ROOT, "tests", "integration", "apps", "overload_app.py")
APP_CPU = 0
PROXY_CPU = 1


def variants(fixed):
    return {
        f"fifo-{fixed}": {"max_in_flight": fixed, "queue_order": "fifo"},
        f"lifo-{fixed}": {"max_in_flight": fixed, "queue_order": "lifo"},
        f"adaptive-{fixed}": {"max_in_flight": fixed, "queue_order": "adaptive"},
        "auto-fifo": {"max_in_flight": "auto", "queue_order": "fifo"},
        "auto-adaptive": {"max_in_flight": "auto", "queue_order": "adaptive"},
        "haproxy": None,
    }


def start_app(procs, workdir, pool, ms):
    out = open(os.path.join(workdir, "app.log"), "w+")
    p = procs.start([bl.PYTHON, APP, "--port", "0", "--pool", str(pool), "--ms", str(ms)],
                    cpu=APP_CPU, stdout=out, stderr=out, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out.seek(0)
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", out.read())
        if m:
            return int(m.group(1))
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("overload_app did not start")


def app_idle(port, timeout=30):
    """Waits until the app has nothing in flight (the last cell's backlog is gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = bl.http_get(port, "/stats")
        if status == 200 and json.loads(body)["in_flight"] == 0:
            return True
        time.sleep(0.1)
    return False


def start_loopguard(procs, workdir, name, app_port, limits):
    port, admin = bl.free_port(), bl.free_port()
    conf = os.path.join(workdir, f"{name}.yaml")
    route = {"max_queue": 10000, "queue_timeout": "30s", **limits}
    with open(conf, "w") as f:
        f.write(f"""listen: "127.0.0.1:{port}"
admin: {{listen: "127.0.0.1:{admin}"}}
log: {{access_log: false, level: warn}}
upstreams:
  app: {{endpoints: ["127.0.0.1:{app_port}"]}}
routes:
  - name: r
    match: {{prefix: /}}
    upstream: app
    limits: {json.dumps(route)}
""")
    err = open(os.path.join(workdir, f"{name}.log"), "wb")
    p = procs.start([bl.loopguard_bin(), "proxy", "--config", conf], cpu=PROXY_CPU, stderr=err,
                    stdout=err)
    ok, why = bl.wait_http(admin, "/healthz", proc=p)
    if not ok:
        raise RuntimeError(f"loopguard did not start: {why}")
    return p, port, admin


def start_haproxy(procs, workdir, app_port, fixed):
    port = bl.free_port()
    conf = os.path.join(workdir, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""global
    nbthread 1
    maxconn 19000
    no strict-limits
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout queue 30s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server app 127.0.0.1:{app_port} maxconn {fixed} maxqueue 10000
""")
    err = open(os.path.join(workdir, "haproxy.log"), "wb")
    p = procs.start(["haproxy", "-db", "-f", conf], cpu=PROXY_CPU, stderr=err, stdout=err)
    ok, why = bl.wait_http(port, "/io?ms=0", proc=p)
    if not ok:
        raise RuntimeError(f"haproxy did not start: {why}")
    return p, port, None


def limit_stats(admin):
    """(limits seen in the run's last scrape, lifo switches) from loopguard's /metrics."""
    if admin is None:
        return None
    try:
        m = ov.scrape(admin)
    except Exception:  # noqa: BLE001 - a missing figure is a dash in the table
        return None
    return ov.metric(m, "loopguard_route_limit", route="r")


def run_cell(procs, workdir, args, app_port, capacity, name, limits, load):
    if not app_idle(app_port):
        bl.log("the app is still busy from the last cell")
    if limits is None:
        proc, port, admin = start_haproxy(procs, workdir, app_port, args.fixed)
    else:
        proc, port, admin = start_loopguard(procs, workdir, name, app_port, limits)
    try:
        rate = load * capacity
        results = ov.open_loop(port, [(args.path, rate, args.duration)],
                               timeout=args.client_timeout)
        s = ov.summarize(results, (args.warmup, args.duration), slo=args.slo)
        s["timed_out"] = sum(s["failed"].values())
        s["limit_end"] = limit_stats(admin)
    finally:
        procs.stop(proc)
    s.update({"variant": name, "load": load, "rate": rate, "capacity": capacity})
    bl.log(f"{name} x{load}: goodput {s['goodput']:.1f}/s ({s['goodput'] / capacity:.2f}x), "
           f"p50 {s['p50']}, p99 {s['p99']}, refused {s['refused']}, timed out {s['timed_out']}")
    return s


def ms(x):
    return bl.fmt(x * 1000 if x is not None else None, 0)


def table(cells, slo):
    rows = []
    for c in sorted(cells, key=lambda c: (c["load"], list(VARIANTS).index(c["variant"]))):
        window_sent = c["sent"]
        # (Runs before "failed" existed counted clients that gave up under "TimeoutError".)
        refused = ", ".join(f"{k} {v}" for k, v in sorted(c["refused"].items())
                            if not k.endswith("Error"))
        rows.append([
            f"{c['load']:g}x ({c['rate']:.0f}/s)", c["variant"],
            bl.fmt(c["goodput"], 1), f"{c['goodput'] / c['capacity']:.2f}",
            ms(c["p50"]), ms(c["p99"]),
            f"{100 * c['served'] / window_sent:.0f}%" if window_sent else "—",
            refused or "0", str(c["timed_out"]),
            bl.fmt(c["limit_end"]) if c["limit_end"] is not None else "—",
        ])
    return bl.markdown_table(
        ["offered", "variant", f"goodput ≤{slo:g}s /s", "× capacity", "served p50 ms",
         "served p99 ms", "served", "refused (reason: count)", "timed out", "limit at end"],
        rows, left=(0, 1, 7))


def draw(base, cells, capacity, title):
    dat = base + ".dat"
    names = list(VARIANTS)
    loads = sorted({c["load"] for c in cells})
    with open(dat, "w") as f:
        f.write("# load " + " ".join(f"{n}_goodput {n}_p99" for n in names) + "\n")
        for load in loads:
            row = [f"{load:g}"]
            for n in names:
                c = next((c for c in cells if c["load"] == load and c["variant"] == n), None)
                row.append(f"{c['goodput'] / capacity:.3f}" if c else "NaN")
                row.append(f"{c['p99'] * 1000:.1f}" if c and c["p99"] else "NaN")
            f.write(" ".join(row) + "\n")
    plots_g = ", ".join(f"'{dat}' using 1:{2 + 2 * i} with linespoints title '{n}'"
                        for i, n in enumerate(names))
    plots_p = ", ".join(f"'{dat}' using 1:{3 + 2 * i} with linespoints title '{n}'"
                        for i, n in enumerate(names))
    bl.gnuplot(f"""set terminal pngcairo size 1200,480 font ',10'
set output '{base}.png'
set multiplot layout 1,2 title '{title}, open loop, shared 2-core machine'
set xlabel 'offered load (x capacity)'
set grid
set key bottom left
set ylabel 'goodput within the SLO (x capacity)'
set yrange [0:1.2]
plot {plots_g}
set ylabel 'served p99 (ms, log)'
set logscale y
set yrange [10:40000]
set key bottom right
plot {plots_p}
unset multiplot
""", "overload")


VARIANTS = {}


def chart_title(args):
    if args["app"] == "cpu":
        return f"CPU endpoint ({args['ms']:g} ms, one at a time)"
    return f"DB pool of {args['pool']} ({args['ms']:g} ms each)"


def main():
    global VARIANTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loads", default="0.5,1,1.5,2,3", help="offered loads, x capacity")
    ap.add_argument("--variants", default=None, help="comma-separated subset")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--client-timeout", type=float, default=15.0)
    ap.add_argument("--slo", type=float, default=1.0)
    ap.add_argument("--fixed", type=int, default=2, help="the fixed max_in_flight (and maxconn)")
    ap.add_argument("--app", choices=("cpu", "db"), default="cpu",
                    help="cpu: /cpu (one at a time); db: /db (a pool of --pool)")
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--ms", type=float, default=20.0, help="the app's service time")
    ap.add_argument("--budget", type=float, default=1500, help="overall seconds")
    ap.add_argument("--from-json", help="reprint the table and redraw the chart of a past run")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            past = json.load(f)
        VARIANTS = {c["variant"]: None for c in past["cells"]}
        base = args.from_json[:-len(".json")]
        print(table(past["cells"], past["args"]["slo"]))
        draw(base, past["cells"], past["cells"][0]["capacity"], chart_title(past["args"]))
        return
    args.path = "/" + args.app
    VARIANTS = variants(args.fixed)
    if args.variants:
        VARIANTS = {k: v for k, v in VARIANTS.items() if k in args.variants.split(",")}
    if not bl.loopguard_bin():
        bl.log("no loopguard binary (set LOOPGUARD_BIN or build build-bench/)")
        sys.exit(2)
    if "haproxy" in VARIANTS and not bl.ensure_tools(["haproxy"]) == []:
        bl.log("haproxy not installed: that variant is skipped")
        VARIANTS.pop("haproxy")
    loads = [float(x) for x in args.loads.split(",")]
    info = bl.machine_info()
    if bl.PINNING:
        os.sched_setaffinity(0, {PROXY_CPU})  # the load generator next to the proxy
    procs = bl.Procs()
    workdir = procs.workdir("overload-")
    bl.set_budget(args.budget)
    cells = []
    capacity = [None]

    def rounds():
        app_port = start_app(procs, workdir, args.pool, args.ms)
        clients = 2 if args.app == "cpu" else 4 * args.pool
        capacity[0] = ov.capacity(app_port, args.path, clients=clients, seconds=3.0)
        bl.log(f"capacity {capacity[0]:.1f} req/s ({args.path}, closed loop, {clients} clients)")
        names = list(VARIANTS)
        for i, load in enumerate(loads):
            order = names[i % len(names):] + names[:i % len(names)]  # rotate per load
            for name in order:
                cells.append(run_cell(procs, workdir, args, app_port, capacity[0], name,
                                      VARIANTS[name], load))

    if not bl.measure_rounds(procs, cells, rounds):
        sys.exit(2)
    info["load_end"] = bl.loadavg()
    header = bl.report_header(
        "overload", info, bl.loopguard_bin(), "",
        [f"App: overload_app.py {args.path} ({args.ms:g} ms"
         + (f", pool {args.pool}" if args.app == "db" else ", one at a time")
         + f"), one process on CPU 0; capacity measured {capacity[0] or 0:.1f} req/s",
         f"Each cell: {args.duration:g} s open loop, first {args.warmup:g} s not counted; SLO "
         f"{args.slo:g} s; clients give up after {args.client_timeout:g} s; loopguard variants: "
         "max_queue 10000, queue_timeout 30s; HAProxy: maxconn "
         f"{args.fixed} + maxqueue 10000, timeout queue 30s",
         "The machine was shared with other engineers' builds and tests: compare variants "
         "within this run, not absolute numbers across runs."])
    header[2] = (f"Machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}; pinning: "
                 + ("the app on CPU 0, the proxy and the load generator on CPU 1"
                    if info["pinning"] else "none"))
    md = table(cells, args.slo)
    bl.publish("overload", header, md, {"info": info, "args": vars(args), "cells": cells},
               lambda base: draw(base, cells, capacity[0] or 1, chart_title(vars(args))))


if __name__ == "__main__":
    main()
