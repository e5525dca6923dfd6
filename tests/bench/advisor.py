#!/usr/bin/python3
"""The loop-block advisor's benchmark.

1. Time to a correct verdict: a FastAPI app (tests/integration/apps/advisor_app.py) gets
   GET /cpu/loop?ms=B (a handler that computes on the loop for B ms) at 4 req/s and a waiting
   endpoint (GET /io/sleep, 20 ms asyncio.sleep) at R req/s, Poisson, probe off; and with paced
   arrivals and the probe on. For each block length B and rate R: a fresh loopguard, /advice
   polled every 0.5 s, the time until the blocker is blocks_loop and stays so (— if not within
   the run), and whether the waiter was ever flagged.
2. False positives over a long run: the app's full mix (two blockers, seven ways of waiting),
   /advice polled every 5 s; the share of (poll, waiting endpoint) pairs reported blocks_loop.
   The run's completions are recorded (LOOPGUARD_ADVICE_TRACE) for 3.
3. CPU cost: ns per observation of the statistics (build/advisor_replay on that trace), and
   loopguard's CPU time per request with advice on and off (wrk against nginx, alternated rounds).

A benchmark never fails the build: it reports what it measured and exits 0 (2 if it cannot run
at all). The machine is shared: figures are from one run, ratios within it.
"""
import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import benchlib as bl  # noqa: E402
import advisor_support as adv  # noqa: E402

WAITERS = ["GET /cpu/nogil-thread", "GET /cpu/process", "GET /sync/sleep", "GET /io/sleep",
           "GET /db", "GET /lock", "POST /upload"]
MIX = {"GET /cpu/loop": 4, "GET /cpu/gil-thread": 4, "GET /cpu/nogil-thread": 3,
       "GET /cpu/process": 4, "GET /sync/sleep": 8, "GET /io/sleep": 40, "GET /db": 15,
       "GET /lock": 8, "POST /upload": 4}


def start_loopguard(procs, app_port, probe, workdir, env=None, enabled=True, name="lg"):
    conf = os.path.join(workdir, f"{name}.yaml")
    with open(conf, "w") as f:
        f.write(f"""listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0"}}
log: {{access_log: false}}
upstreams:
  app: {{endpoints: ["127.0.0.1:{app_port}"], max_idle_connections: 64}}
routes:
  - {{name: app, match: {{prefix: /}}, upstream: app}}
advice: {{enabled: {str(enabled).lower()}, probe: {str(probe).lower()}, probe_path: /health}}
""")
    log_path = os.path.join(workdir, f"{name}.log")
    full_env = dict(os.environ, **(env or {}))
    p = subprocess.Popen([bl.loopguard_bin(), "proxy", "--config", conf], stderr=open(log_path, "w"),
                         stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=full_env,
                         start_new_session=True, preexec_fn=bl._pdeathsig)
    procs.procs.append(p)
    deadline = time.monotonic() + 15
    port = admin = None
    while time.monotonic() < deadline and (port is None or admin is None):
        time.sleep(0.1)
        with open(log_path) as f:
            for line in f:
                m = re.search(r"(admin )?listening on 127\.0\.0\.1:(\d+)", line)
                if m:
                    if m.group(1):
                        admin = int(m.group(2))
                    else:
                        port = int(m.group(2))
    if port is None or admin is None:
        raise RuntimeError(f"loopguard did not start: {open(log_path).read()[-500:]}")
    return p, port, admin


def time_to_verdict(procs, app, workdir, block_ms, rate, paced, probe, limit_s):
    p, port, admin = start_loopguard(procs, app.port, probe, workdir, name=f"ttv-{block_ms}-{rate}")
    spec = {f"GET /cpu/loop?ms={block_ms}": 4, "GET /io/sleep": rate}
    traffic = adv.Traffic(port, spec, paced=paced).start()
    start = time.monotonic()
    since = None
    false_alarm = False
    samples = 0
    try:
        while time.monotonic() - start < limit_s:
            time.sleep(0.5)
            seen = adv.by_path(adv.advice(admin))
            cpu = seen.get("GET /cpu/loop", {})
            io = seen.get("GET /io/sleep", {})
            false_alarm |= io.get("verdict") == "blocks_loop"
            samples = cpu.get("samples", 0)
            if cpu.get("verdict") == "blocks_loop":
                since = since or time.monotonic() - start
                if time.monotonic() - start - since >= 5:
                    break  # stable for 5 s
            else:
                since = None
    finally:
        traffic.stop()
        procs.stop(p)
    return {"block_ms": block_ms, "rate": rate, "paced": paced, "probe": probe,
            "seconds": since, "false_alarm": false_alarm, "samples": samples}


def false_positives(procs, app, workdir, seconds, trace):
    p, port, admin = start_loopguard(procs, app.port, False, workdir,
                                     env={"LOOPGUARD_ADVICE_TRACE": trace}, name="fp")
    traffic = adv.Traffic(port, MIX).start()
    polls = flagged = 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            time.sleep(5)
            seen = adv.by_path(adv.advice(admin))
            for w in WAITERS:
                if w in seen and seen[w]["samples"] >= 30:
                    polls += 1
                    flagged += seen[w]["verdict"] == "blocks_loop"
        final = adv.advice(admin)
    finally:
        traffic.stop()
        procs.stop(p)
    return {"seconds": seconds, "polls": polls, "flagged": flagged, "summary": adv.summary(final),
            "blockers": {k: adv.by_path(final).get(k, {}).get("verdict")
                         for k in ("GET /cpu/loop", "GET /cpu/gil-thread")}}


def replay_cost(trace):
    exe = os.path.join(bl.ROOT, "build", "advisor_replay")
    if not os.path.exists(exe) or not os.path.exists(trace):
        return None
    out = subprocess.run([exe, trace, "--repeat", "50"], capture_output=True, text=True, timeout=120)
    m = re.search(r"([\d.]+) ns per observation", out.stdout)
    return float(m.group(1)) if m else None


def cpu_per_request(procs, workdir, rounds, seconds):
    if bl.ensure_tools(["wrk", "nginx"]):
        return None
    up = bl.Upstream(procs, workdir)
    res = {True: [], False: []}
    for r in range(rounds):
        for enabled in ([True, False] if r % 2 == 0 else [False, True]):
            p, port, admin = start_loopguard(procs, up.port, False, workdir, enabled=enabled,
                                             name=f"cpu-{enabled}-{r}")
            bl.run_wrk(port, "/small", 32, 1)  # warm-up
            t0 = bl.cpu_ticks([p.pid])
            w, _ = bl.run_wrk(port, "/small", 32, seconds)
            ticks = bl.cpu_ticks([p.pid]) - t0
            if w and w.get("requests"):
                res[enabled].append(ticks / bl.CLK_TCK * 1e6 / w["requests"])
            procs.stop(p)
    return {k: bl.median(v) for k, v in res.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", default="1,2,5,20", help="block lengths, ms")
    ap.add_argument("--rates", default="20,50,100", help="waiter rates, req/s")
    ap.add_argument("--limit", type=float, default=40, help="longest wait for a verdict, s")
    ap.add_argument("--long-run", type=float, default=180, help="false-positive run, s")
    ap.add_argument("--cpu-rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=1800)
    args = ap.parse_args()
    if not bl.loopguard_bin():
        bl.log("no loopguard binary")
        return 2
    info = bl.machine_info()
    procs = bl.Procs()
    workdir = procs.workdir("advisor")
    trace = os.path.join(workdir, "trace.txt")
    runs = {"ttv": [], "fp": None, "ns": None, "cpu": None}
    bl.set_budget(args.budget)

    def rounds():
        app = adv.fastapi_app(workers=1)
        app.start()
        try:
            for paced, probe in ((False, False), (True, True)):
                for b in [float(x) for x in args.blocks.split(",")]:
                    for rate in [float(x) for x in args.rates.split(",")]:
                        if paced and rate != 50:
                            continue
                        bl.log(f"time to verdict: {b} ms blocks, {rate}/s waiters, "
                               f"{'paced+probe' if paced else 'poisson'}")
                        runs["ttv"].append(time_to_verdict(procs, app, workdir, b, rate, paced,
                                                           probe, args.limit))
            bl.log(f"false positives: {args.long_run:.0f} s of the full mix")
            runs["fp"] = false_positives(procs, app, workdir, args.long_run, trace)
        finally:
            app.stop()
        runs["ns"] = replay_cost(trace)
        bl.log("CPU per request, advice on and off")
        runs["cpu"] = cpu_per_request(procs, workdir, args.cpu_rounds, 5)

    if not bl.measure_rounds(procs, runs["ttv"], rounds):
        return 2
    info["load_end"] = bl.loadavg()
    rows = []
    for r in runs["ttv"]:
        rows.append([f"{r['block_ms']:g} ms", f"{r['rate']:g}/s",
                     "paced, probe on" if r["paced"] else "Poisson, probe off",
                     bl.fmt(r["seconds"], 1) if r["seconds"] is not None else f"— (>{args.limit:g} s)",
                     r["samples"], "yes" if r["false_alarm"] else "no"])
    md = "### Time to a correct verdict (GET /cpu/loop?ms=B at 4/s, GET /io/sleep at R/s)\n\n"
    md += bl.markdown_table(["block", "waiter rate", "arrivals", "s to blocks_loop (stable 5 s)",
                             "blocker samples then", "waiter ever flagged"], rows, left=(0, 1, 2))
    fp = runs["fp"]
    if fp:
        md += (f"\n\n### False positives over {fp['seconds']:.0f} s of the full mix\n\n"
               f"{fp['flagged']} of {fp['polls']} (poll, waiting endpoint) pairs reported "
               f"blocks_loop ({100 * fp['flagged'] / max(1, fp['polls']):.1f}%); blockers at the "
               f"end: {fp['blockers']}.\n\n```\n{fp['summary']}\n```")
    md += "\n\n### Cost\n\n"
    if runs["ns"]:
        md += f"- statistics: {runs['ns']:.0f} ns per observation (advisor_replay on the run's trace)\n"
    if runs["cpu"] and runs["cpu"].get(True) and runs["cpu"].get(False):
        on, off = runs["cpu"][True], runs["cpu"][False]
        md += (f"- loopguard CPU per request (wrk c=32 against nginx, {args.cpu_rounds} alternated "
               f"rounds, medians): advice on {on:.1f} µs, off {off:.1f} µs ({(on / off - 1) * 100:+.1f}%)\n")
    header = [f"# advisor — {info['date']}", "",
              f"Machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}; no pinning "
              "(the app, loopguard and the clients share the cores, as in production)",
              f"Load average (1/5/15 min) at start: {info['load_start']}, at end: {info['load_end']} "
              "(the machine is shared: every figure is from one run)",
              f"loopguard: {bl.describe_binary(bl.loopguard_bin())}"]

    def draw(base):
        data = os.path.join(os.path.dirname(base), "advisor-ttv.dat")
        with open(data, "w") as f:
            for b in sorted({r["block_ms"] for r in runs["ttv"]}):
                f.write(f'"{b:g} ms"\n')
                for r in runs["ttv"]:
                    if r["block_ms"] == b and not r["paced"]:
                        f.write(f"{r['rate']} {r['seconds'] if r['seconds'] is not None else args.limit}\n")
                f.write("\n\n")
        bl.gnuplot(f"""set terminal pngcairo size 800,450
set output '{base}.png'
set title 'Time until the advisor flags a loop-blocking endpoint (Poisson, probe off)'
set xlabel 'waiting requests per second (victims)'
set ylabel 'seconds to a stable blocks_loop ({args.limit:g} = not within the run)'
set yrange [0:{args.limit + 2}]
set key top right
plot for [i=0:*] '{data}' index i using 1:2 with linespoints title columnheader(1)
""", "advisor")

    bl.publish("advisor", header, md, runs, draw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
