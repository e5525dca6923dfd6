#!/usr/bin/python3
"""Memory per idle keep-alive connection: RSS growth of each proxy holding 10,000 idle clients.

For each proxy (loopguard, nginx 1 worker, HAProxy nbthread 1 — the same configurations as
proxy_overhead) a fresh instance is started in front of the fixed upstream (nginx `return 200`),
warmed up (wrk, 1 s, 20 connections), then its RSS is read ("before"). idle_clients.py then
opens N connections (default 10,000), makes one GET /small on each, reads the response and keeps
the connection open and idle; after a settle time the RSS is read again ("after").
KiB per idle connection = (after - before) / connections that got their response.
For nginx the worker process is measured (the master holds no connections). Note that nginx
allocates its connection array (worker_connections) at start, so that part is in "before".

Rounds alternate the proxies (order rotates); cells are medians over rounds.
Pinning (2+ CPUs): proxy on CPU 1, clients and upstream on CPU 0.
Output: Markdown table on stdout; results/memory-<stamp>.{md,json,dat,png}.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

PROXIES = ["loopguard", "nginx", "haproxy"]
TARGET_KIB = {"loopguard": 1.0}


def measure(procs, name, work, up_port, count, settle, nofile, tag):
    r = {"proxy": name, "connections": 0, "before_kib": None, "after_kib": None,
         "kib_per_conn": None, "connect_s": None, "error": ""}
    p = bl.Proxy(procs, name, work, up_port, nofile=nofile, tag=tag)
    if p.error:
        r["error"] = p.error
        return r
    try:
        bl.run_wrk(p.port, "/small", 20, 1)
        time.sleep(1.0)
        pid = p.main_pid()
        r["pid_measured"] = "worker" if name == "nginx" else "process"
        r["before_kib"] = bl.status_kib(pid, "VmRSS")
        client = procs.start([bl.PYTHON, os.path.join(bl.HERE, "idle_clients.py"), str(p.port),
                              "--count", str(count), "--hold", "300"],
                             cpu=bl.CLIENT_CPU, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
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
            time.sleep(settle)
            r["established"] = established(p.port)
            r["after_kib"] = bl.status_kib(pid, "VmRSS")
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


def _readline(proc, timeout):
    """One line from proc's stdout within timeout ('' on timeout or exit)."""
    import select
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
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds idle before 'after' (2)")
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--out-dir", default=bl.RESULTS)
    args = ap.parse_args()
    bl.RESULTS = args.out_dir
    proxies = [p for p in args.proxies.split(",") if p in PROXIES + ["loopguard-baseline"]]

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
    budget = len(proxies) * args.rounds * (args.settle + 60) + 120
    bl.set_budget(budget)
    info = bl.machine_info()
    binary = bl.loopguard_bin()
    bl.log(f"{info['nproc']} CPUs ({info['cpu']}), nofile {nofile}, {count} connections; "
           f"loopguard: {bl.describe_binary(binary)}; budget {budget:.0f} s")

    procs = bl.Procs()
    work = procs.workdir("memory")
    runs = []
    def rounds():
        up = bl.Upstream(procs, work)
        for rnd in range(args.rounds):
            k = rnd % len(proxies)
            for name in proxies[k:] + proxies[:k]:
                r = measure(procs, name, work, up.port, count, args.settle, min(nofile, 20000),
                            tag=f"-r{rnd}")
                r["round"] = rnd
                runs.append(r)
                bl.log(f"round {rnd + 1}/{args.rounds} {name:9s} {r['connections']} conns "
                       f"(established {r.get('established')}) before {r['before_kib']} KiB "
                       f"after {r['after_kib']} KiB -> {bl.fmt(r['kib_per_conn'], 2)} KiB/conn "
                       f"{r['error']}")

    if not bl.measure_rounds(procs, runs, rounds):
        return 2
    report(runs, proxies, count, info, binary, args)
    return 0


def report(runs, proxies, count, info, binary, args):
    rows = []
    for name in proxies:
        mine = [r for r in runs if r["proxy"] == name]
        if not mine:
            continue
        ok = [r for r in mine if r["kib_per_conn"] is not None]
        rows.append({
            "proxy": name, "rounds": len(ok),
            "connections": bl.median([r["connections"] for r in ok]),
            "before_kib": bl.median([r["before_kib"] for r in ok]),
            "after_kib": bl.median([r["after_kib"] for r in ok]),
            "kib_per_conn": bl.median([r["kib_per_conn"] for r in ok]),
            "error": "; ".join(sorted({r["error"] for r in mine if r["error"]}))[:300],
        })
    headers = ["proxy", "idle conns", "RSS before MiB", "RSS after MiB", "KiB / idle conn",
               "target", "notes"]
    table = []
    for r in rows:
        t = TARGET_KIB.get(r["proxy"])
        verdict = ""
        if t is not None and r["kib_per_conn"] is not None:
            verdict = f"≤ {t:g} ({'met' if r['kib_per_conn'] <= t else 'not met'})"
        note = r["error"] or ("worker process" if r["proxy"] == "nginx" else "")
        table.append([r["proxy"], bl.fmt(r["connections"]),
                      bl.fmt(r["before_kib"] and r["before_kib"] / 1024, 1),
                      bl.fmt(r["after_kib"] and r["after_kib"] / 1024, 1),
                      bl.fmt(r["kib_per_conn"], 2), verdict, note])
    md = bl.markdown_table(headers, table, left={0, 5, 6})
    header = bl.report_header("memory", info, binary, "clients + upstream", [
        f"{count} idle keep-alive connections, one GET /small each; {args.rounds} rounds "
        f"(fresh proxy each time, alternated), medians; RSS read {args.settle:g} s after the "
        "last response. KiB / idle conn = (after - before) / connections.",
    ])
    bl.publish("memory", header, md, {"machine": info, "args": vars(args), "summary": rows,
                                      "runs": runs}, lambda base: chart(rows, base))


def chart(rows, base):
    rows = [r for r in rows if r["kib_per_conn"] is not None]
    if not rows:
        return
    with open(base + ".dat", "w") as f:
        f.write("# proxy kib_per_conn\n")
        for i, r in enumerate(rows):
            f.write(f"{i} \"{r['proxy']}\" {r['kib_per_conn']:.4f}\n")
    top = max(max(r["kib_per_conn"] for r in rows), 1.0) * 1.25
    script = f"""set terminal pngcairo size 700,450 font "sans,10"
set output '{base}.png'
set title "RSS growth per idle keep-alive connection (median; lower is better)"
set ylabel "KiB per idle connection"
set style fill solid 0.85 border -1
set boxwidth 0.6
set grid ytics
set yrange [0:{top:.3f}]
set xrange [-0.6:{len(rows) - 0.4}]
set key top right
plot '{base}.dat' using 1:3:xtic(2) with boxes lc rgb '#4c72b0' notitle, \\
     '' using 1:3:(sprintf("%.2f", $3)) with labels offset 0,0.8 notitle, \\
     1 with lines dt 2 lw 1.5 lc rgb '#1b9e77' title "loopguard target: 1 KiB"
"""
    bl.gnuplot(script, "memory")


if __name__ == "__main__":
    sys.exit(main())
