#!/usr/bin/python3
"""Memory per connection: RSS growth of each proxy holding many connections, in three scenarios.

  idle      10,000 idle keep-alive clients that each made one request (idle_clients.py)
  slow      100 slow readers: a 4 KiB receive buffer, one GET of a 32 MiB file, read at 4 KiB/s
  pipeline  100 clients that send 20 GETs of the same file at once and never read a byte

(memory_clients.py makes the last two.) The 32 MiB responses are far larger than what the kernel
buffers for a connection whose peer does not read (on loopback up to ~8 MiB: 4 MiB unsent in the
proxy's socket to the client, as much again on the upstream side), so every proxy is left
holding what it read and could not send: that is what slow/pipeline measure.

For each proxy (loopguard, nginx 1 worker with the 64 KiB buffers of proxy_overhead, nginx with
its default 4/8 KiB proxy buffers, HAProxy nbthread 1) a fresh instance is started in front of
the fixed upstream (nginx: `return 200` on /small, static files), warmed up (wrk, 1 s, 20
connections, on /small and on the big file), then its RSS is read ("before"); the clients connect
and, once the RSS has stopped changing (or --settle seconds passed), it is read again ("after").
KiB per connection = (after - before) / connections that were served. For nginx the worker
process is measured (the master holds no connections); it allocates its connection array
(worker_connections) at start, so that part is in "before".

Rounds alternate the proxies (order rotates); cells are medians over rounds.
Pinning (2+ CPUs): proxy on CPU 1, clients and upstream on CPU 0.
Output: Markdown table on stdout; results/memory-<stamp>.{md,json,dat,png}.
"""
import argparse
import json
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

PROXIES = ["loopguard", "nginx", "nginx-defaults", "haproxy"]
SCENARIOS = ["idle", "slow", "pipeline"]
BIG_FILE = 32 << 20
# loopguard's targets: under 1 KiB per idle connection; at most 64 KiB held per connection whose
# peer does not read (issue 8).
TARGET_KIB = {"idle": 1.0, "slow": 64.0, "pipeline": 64.0}
LABELS = {"idle": "idle keep-alive", "slow": "slow reader (4 KiB/s)",
          "pipeline": "pipelining, never reads"}


def measure(procs, name, work, up_port, scenario, count, settle, nofile, tag):
    r = {"proxy": name, "scenario": scenario, "connections": 0, "before_kib": None,
         "after_kib": None, "kib_per_conn": None, "connect_s": None, "error": ""}
    p = bl.Proxy(procs, name, work, up_port, nofile=nofile, tag=tag)
    if p.error:
        r["error"] = p.error
        return r
    try:
        bl.run_wrk(p.port, "/small", 20, 1)
        if scenario != "idle":
            bl.run_wrk(p.port, "/files/big", 20, 1)
        time.sleep(1.0)
        pid = p.main_pid()
        r["pid_measured"] = "worker" if name.startswith("nginx") else "process"
        r["before_kib"] = bl.status_kib(pid, "VmRSS")
        if scenario == "idle":
            cmd = [bl.PYTHON, os.path.join(bl.HERE, "idle_clients.py"), str(p.port),
                   "--count", str(count), "--hold", "300"]
        else:
            cmd = [bl.PYTHON, os.path.join(bl.HERE, "memory_clients.py"), str(p.port), scenario,
                   "--path", "/files/big", "--count", str(count), "--hold", "300"]
        client = procs.start(cmd, cpu=bl.CLIENT_CPU, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        try:
            line = _readline(client, timeout=180)
            try:
                summary = json.loads(line)
            except ValueError:
                r["error"] = f"client said {line!r}"
                return r
            r["connections"] = summary["ok"]
            r["connect_s"] = summary["seconds"]
            if summary["failed"]:
                r["error"] = f"{summary['failed']} failed, first: {summary['first_error']}"
            if scenario == "idle":
                time.sleep(settle)
                r["after_kib"] = bl.status_kib(pid, "VmRSS")
            else:
                r["after_kib"] = settled_kib(pid, settle)
            r["established"] = established(p.port)
            r["hwm_kib"] = bl.status_kib(pid, "VmHWM")
            if r["connections"] and r["before_kib"] is not None and r["after_kib"] is not None:
                r["kib_per_conn"] = (r["after_kib"] - r["before_kib"]) / r["connections"]
        finally:
            try:
                client.stdin.close()
            except OSError:
                pass
            try:
                client.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            procs.stop(client)
    finally:
        p.stop()
    return r


def settled_kib(pid, bound):
    """VmRSS once two samples 0.5 s apart are within 1% (the proxy has filled every buffer it
    will fill), or after `bound` seconds."""
    deadline = time.monotonic() + bound
    last = bl.status_kib(pid, "VmRSS")
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = bl.status_kib(pid, "VmRSS")
        if now is None or last is None or abs(now - last) <= last / 100:
            return now
        last = now
    return last


def _readline(proc, timeout):
    """One line from proc's stdout within timeout ('' on timeout or exit)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            return proc.stdout.readline().strip()
        if proc.poll() is not None:
            return ""
    return ""


def established(port):
    """Established TCP connections whose local port is `port` (from /proc/net/tcp)."""
    n = 0
    hexport = f"{port:04X}"
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(":" + hexport) and parts[3] == "01":
                        n += 1
        except OSError:
            pass
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=10000, help="idle connections (10000)")
    ap.add_argument("--stalled", type=int, default=100,
                    help="connections in the slow and pipeline scenarios (100; each costs the "
                         "kernel ~8 MiB of socket buffers while it lasts)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds idle before 'after' (idle: 2); the bound on waiting for the "
                         "RSS to settle is 10x this for slow/pipeline")
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--out-dir", default=bl.RESULTS)
    args = ap.parse_args()
    bl.RESULTS = args.out_dir
    proxies = [p for p in args.proxies.split(",") if p in PROXIES + ["loopguard-baseline"]]
    scenarios = [s for s in args.scenarios.split(",") if s in SCENARIOS]

    missing = bl.ensure_tools(["wrk", "nginx"])
    if missing:
        print(f"memory: cannot run without {', '.join(missing)} (deploy/install-deps.sh --bench)",
              file=sys.stderr)
        return 2
    nofile = bl.raise_nofile(65536)
    # The client and the proxy each hold one fd per connection, plus the proxy's upstream side.
    count = min(args.connections, nofile - 600)
    if count < args.connections:
        bl.log(f"nofile limit {nofile}: measuring {count} connections instead of "
               f"{args.connections}")
    per_cell = {"idle": args.settle + 60, "slow": 10 * args.settle + 40,
                "pipeline": 10 * args.settle + 40}
    budget = len(proxies) * args.rounds * sum(per_cell[s] for s in scenarios) + 120
    bl.set_budget(budget)
    info = bl.machine_info()
    binary = bl.loopguard_bin()
    bl.log(f"{info['nproc']} CPUs ({info['cpu']}), nofile {nofile}, {count} idle / "
           f"{args.stalled} stalled connections; loopguard: {bl.describe_binary(binary)}; "
           f"budget {budget:.0f} s")

    procs = bl.Procs()
    work = procs.workdir("memory")
    runs = []

    def rounds():
        up = bl.Upstream(procs, work, files={"big": BIG_FILE})
        for scenario in scenarios:
            n = count if scenario == "idle" else args.stalled
            bound = args.settle if scenario == "idle" else 10 * args.settle
            for rnd in range(args.rounds):
                k = rnd % len(proxies)
                for name in proxies[k:] + proxies[:k]:
                    r = measure(procs, name, work, up.port, scenario, n, bound,
                                min(nofile, 20000), tag=f"-{scenario}-r{rnd}")
                    r["round"] = rnd
                    runs.append(r)
                    bl.log(f"{scenario:8s} round {rnd + 1}/{args.rounds} {name:14s} "
                           f"{r['connections']} conns (established {r.get('established')}) "
                           f"before {r['before_kib']} KiB after {r['after_kib']} KiB -> "
                           f"{bl.fmt(r['kib_per_conn'], 2)} KiB/conn {r['error']}")

    if not bl.measure_rounds(procs, runs, rounds):
        return 2
    report(runs, proxies, scenarios, count, info, binary, args)
    return 0


def summarize(runs, proxies, scenarios):
    rows = []
    for scenario in scenarios:
        for name in proxies:
            mine = [r for r in runs if r["proxy"] == name and r["scenario"] == scenario]
            if not mine:
                continue
            ok = [r for r in mine if r["kib_per_conn"] is not None]
            rows.append({
                "scenario": scenario, "proxy": name, "rounds": len(ok),
                "connections": bl.median([r["connections"] for r in ok]),
                "before_kib": bl.median([r["before_kib"] for r in ok]),
                "after_kib": bl.median([r["after_kib"] for r in ok]),
                "kib_per_conn": bl.median([r["kib_per_conn"] for r in ok]),
                "error": "; ".join(sorted({r["error"] for r in mine if r["error"]}))[:300],
            })
    return rows


def report(runs, proxies, scenarios, count, info, binary, args):
    rows = summarize(runs, proxies, scenarios)
    headers = ["scenario", "proxy", "conns", "RSS before MiB", "RSS after MiB", "KiB / conn",
               "× nginx-defaults", "target", "notes"]
    table = []
    for r in rows:
        ref = next((x for x in rows if x["scenario"] == r["scenario"]
                    and x["proxy"] == "nginx-defaults"), None)
        ratio = ""
        if ref and ref["kib_per_conn"] and r["kib_per_conn"] is not None:
            ratio = bl.fmt(r["kib_per_conn"] / ref["kib_per_conn"], 2)
        verdict = ""
        t = TARGET_KIB.get(r["scenario"]) if r["proxy"] == "loopguard" else None
        if t is not None and r["kib_per_conn"] is not None:
            verdict = f"≤ {t:g} ({'met' if r['kib_per_conn'] <= t else 'not met'})"
        note = r["error"] or ("worker process" if r["proxy"].startswith("nginx") else "")
        table.append([LABELS[r["scenario"]], r["proxy"], bl.fmt(r["connections"]),
                      bl.fmt(r["before_kib"] and r["before_kib"] / 1024, 1),
                      bl.fmt(r["after_kib"] and r["after_kib"] / 1024, 1),
                      bl.fmt(r["kib_per_conn"], 2), ratio, verdict, note])
    md = bl.markdown_table(headers, table, left={0, 1, 7, 8})
    details = [f"{args.rounds} rounds (fresh proxy each time, alternated), medians. "
               "KiB / conn = (after - before) / connections."]
    if "idle" in scenarios:
        details.append(f"idle: {count} keep-alive connections, one GET /small each; RSS read "
                       f"{args.settle:g} s after the last response.")
    if set(scenarios) & {"slow", "pipeline"}:
        details.append(f"slow / pipeline: {args.stalled} connections with a 4 KiB receive "
                       f"buffer, GET of a {BIG_FILE >> 20} MiB file (pipeline: 20 at once, "
                       "never read); RSS read once it stops changing.")
    header = bl.report_header("memory", info, binary, "clients + upstream", details)
    bl.publish("memory", header, md, {"machine": info, "args": vars(args), "summary": rows,
                                      "runs": runs}, lambda base: chart(rows, base))


def chart(rows, base):
    rows = [r for r in rows if r["kib_per_conn"] is not None]
    if not rows:
        return
    scenarios = [s for s in SCENARIOS if any(r["scenario"] == s for r in rows)]
    proxies = [p for p in PROXIES if any(r["proxy"] == p for r in rows)]
    with open(base + ".dat", "w") as f:
        f.write("# scenario " + " ".join(proxies) + "\n")
        for s in scenarios:
            vals = []
            for p in proxies:
                r = next((x for x in rows if x["scenario"] == s and x["proxy"] == p), None)
                vals.append(f"{max(r['kib_per_conn'], 0.01):.3f}" if r else "NaN")
            f.write(f"\"{LABELS[s]}\" " + " ".join(vals) + "\n")
    plots = ", ".join(f"'{base}.dat' using {i + 2}:xtic(1) title '{p}'"
                      for i, p in enumerate(proxies))
    script = f"""set terminal pngcairo size 800,450 font "sans,10"
set output '{base}.png'
set title "RSS growth per connection (median; lower is better; log scale)"
set ylabel "KiB per connection"
set logscale y
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set grid ytics
set key top left
plot {plots}
"""
    bl.gnuplot(script, "memory")


if __name__ == "__main__":
    sys.exit(main())
