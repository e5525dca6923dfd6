#!/usr/bin/python3
"""Peak memory of each proxy streaming 1 GiB to a slow reader.

The fixed upstream (nginx) serves a 1 GiB file (sparse: no disk used) as fast as it can; the
client (slow_reader.py) reads the first 256 MiB at 64 MiB/s with a 2 s full stop after 128 MiB,
then the rest as fast as it can. A proxy that applies backpressure keeps its memory flat; one that
buffers what the reader has not taken yet grows. For each proxy (loopguard, nginx 1 worker,
HAProxy nbthread 1 — the same configurations as proxy_overhead; nginx has proxy_buffering on with
proxy_max_temp_file_size 0, i.e. memory buffers only, no temp file) a fresh instance is started;
VmRSS of the proxy process (nginx: its worker) is sampled every 20 ms during the transfer, and
VmHWM read at the end. Peak growth = max(sampled peak, VmHWM) - RSS before the transfer.

Rounds alternate the proxies; cells are medians over rounds.
Pinning (2+ CPUs): proxy on CPU 1, reader and upstream on CPU 0.
Output: Markdown table on stdout; results/streaming-<stamp>.{md,json,dat,png}.
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
MiB = 1 << 20


def measure(procs, name, work, up_port, args, tag):
    r = {"proxy": name, "bytes": 0, "expected": args.size_mib * MiB, "seconds": None,
         "before_kib": None, "peak_kib": None, "hwm_kib": None, "growth_kib": None, "error": ""}
    p = bl.Proxy(procs, name, work, up_port, tag=tag)
    if p.error:
        r["error"] = p.error
        return r
    try:
        bl.http_get(p.port, "/small")
        time.sleep(0.5)
        pid = p.main_pid()
        r["before_kib"] = bl.status_kib(pid, "VmRSS")
        reader = procs.start([bl.PYTHON, os.path.join(bl.HERE, "slow_reader.py"), str(p.port),
                              "/files/big.bin", "--rate", str(args.rate),
                              "--slow-mib", str(args.slow_mib), "--pause", str(args.pause),
                              "--pause-at-mib", str(args.slow_mib / 2),
                              "--timeout", str(args.timeout)],
                             cpu=bl.CLIENT_CPU, stdout=subprocess.PIPE, text=True)
        peak = r["before_kib"] or 0
        deadline = time.time() + args.timeout + 15
        while reader.poll() is None and time.time() < deadline:
            v = bl.status_kib(pid, "VmRSS")
            if v is not None:
                peak = max(peak, v)
            time.sleep(0.02)
        r["peak_kib"] = peak
        r["hwm_kib"] = bl.status_kib(pid, "VmHWM")
        try:
            out, _ = reader.communicate(timeout=5)
            res = json.loads(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            res = {"error": "reader gave no result"}
        procs.stop(reader)
        r["bytes"] = res.get("bytes", 0)
        r["seconds"] = res.get("seconds")
        r["slow_seconds"] = res.get("slow_seconds")
        if r["seconds"] and r["slow_seconds"] and r["bytes"] == r["expected"]:
            fast = r["seconds"] - r["slow_seconds"]
            r["fast_mib_s"] = (r["expected"] / MiB - args.slow_mib) / fast if fast > 0 else None
        r["status"] = res.get("status")
        r["error"] = res.get("error", "")
        if r["bytes"] != r["expected"] and not r["error"]:
            r["error"] = f"got {r['bytes']} of {r['expected']} bytes"
        if r["before_kib"] is not None:
            r["growth_kib"] = max(r["peak_kib"], r["hwm_kib"] or 0) - r["before_kib"]
    finally:
        p.stop()
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rate", type=float, default=64.0, help="MiB/s for the slow part (64)")
    ap.add_argument("--slow-mib", type=float, default=256.0, help="MiB read slowly (256)")
    ap.add_argument("--pause", type=float, default=2.0, help="full stop halfway (2 s)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120.0, help="per transfer (120 s)")
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--out-dir", default=bl.RESULTS)
    args = ap.parse_args()
    bl.RESULTS = args.out_dir
    proxies = [p for p in args.proxies.split(",") if p in PROXIES]

    missing = bl.ensure_tools(["nginx"])
    if missing:
        print(f"streaming: cannot run without {', '.join(missing)} (deploy/install-deps.sh --bench)",
              file=sys.stderr)
        return 2
    budget = len(proxies) * args.rounds * (args.timeout + 25) + 60
    bl.set_budget(budget)
    nofile = bl.raise_nofile(65536)
    info = bl.machine_info()
    binary = bl.loopguard_bin()
    bl.log(f"{info['nproc']} CPUs ({info['cpu']}), nofile {nofile}; {args.size_mib} MiB, first "
           f"{args.slow_mib:g} MiB at {args.rate:g} MiB/s with a {args.pause:g} s stop; "
           f"loopguard: {bl.describe_binary(binary)}; budget {budget:.0f} s")

    procs = bl.Procs()
    work = procs.workdir("streaming")
    runs = []
    def rounds():
        up = bl.Upstream(procs, work, files={"big.bin": args.size_mib * MiB})
        for rnd in range(args.rounds):
            k = rnd % len(proxies)
            for name in proxies[k:] + proxies[:k]:
                r = measure(procs, name, work, up.port, args, tag=f"-r{rnd}")
                r["round"] = rnd
                runs.append(r)
                bl.log(f"round {rnd + 1}/{args.rounds} {name:9s} {r['bytes'] / MiB:.0f} MiB in "
                       f"{r['seconds']} s; RSS before {r['before_kib']} KiB, peak {r['peak_kib']}"
                       f" KiB, HWM {r['hwm_kib']} KiB {r['error']}")

    if not bl.measure_rounds(procs, runs, rounds):
        return 2
    report(runs, proxies, info, binary, args)
    return 0


def report(runs, proxies, info, binary, args):
    rows = []
    for name in proxies:
        mine = [r for r in runs if r["proxy"] == name]
        if not mine:
            continue
        ok = [r for r in mine if r["growth_kib"] is not None]
        complete = sum(1 for r in mine if r["bytes"] == r["expected"])
        rows.append({
            "proxy": name, "rounds": len(mine), "complete": complete,
            "seconds": bl.median([r["seconds"] for r in ok]),
            "fast_mib_s": bl.median([r.get("fast_mib_s") for r in ok]),
            "before_kib": bl.median([r["before_kib"] for r in ok]),
            "peak_kib": bl.median([max(r["peak_kib"], r["hwm_kib"] or 0) for r in ok]),
            "growth_kib": bl.median([r["growth_kib"] for r in ok]),
            "error": "; ".join(sorted({r["error"] for r in mine if r["error"]}))[:300],
        })
    headers = ["proxy", "complete", "seconds", "full-speed part MiB/s", "RSS before MiB",
               "peak RSS MiB", "peak growth KiB", "notes"]
    table = []
    for r in rows:
        table.append([r["proxy"], f"{r['complete']}/{r['rounds']}", bl.fmt(r["seconds"], 1),
                      bl.fmt(r["fast_mib_s"]),
                      bl.fmt(r["before_kib"] and r["before_kib"] / 1024, 1),
                      bl.fmt(r["peak_kib"] and r["peak_kib"] / 1024, 1),
                      bl.fmt(r["growth_kib"]),
                      r["error"] or ("worker process" if r["proxy"] == "nginx" else "")])
    md = bl.markdown_table(headers, table, left={0, 7})
    header = bl.report_header("streaming", info, binary, "reader + upstream", [
        f"{args.size_mib} MiB body; reader: first {args.slow_mib:g} MiB at {args.rate:g} MiB/s "
        f"with a {args.pause:g} s stop halfway, then full speed; {args.rounds} rounds (fresh "
        "proxy each, alternated), medians. Peak = max(VmRSS sampled every 20 ms, VmHWM).",
    ])
    bl.publish("streaming", header, md, {"machine": info, "args": vars(args), "summary": rows,
                                         "runs": runs}, lambda base: chart(rows, base))


def chart(rows, base):
    rows = [r for r in rows if r["growth_kib"] is not None]
    if not rows:
        return
    with open(base + ".dat", "w") as f:
        f.write("# proxy before_mib peak_mib\n")
        for i, r in enumerate(rows):
            f.write(f"{i} \"{r['proxy']}\" {r['before_kib'] / 1024:.3f} {r['peak_kib'] / 1024:.3f}\n")
    top = max(r["peak_kib"] for r in rows) / 1024 * 1.25
    script = f"""set terminal pngcairo size 700,450 font "sans,10"
set output '{base}.png'
set title "RSS of the proxy streaming 1 GiB to a slow reader (median; lower is better)"
set ylabel "MiB"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:{top:.3f}]
set key top left
plot '{base}.dat' using 3:xtic(2) title 'RSS before' lc rgb '#999999', \\
     '' using 4 title 'peak RSS during the transfer' lc rgb '#d95f02', \\
     '' using ($0+0.15):4:(sprintf("%.1f", $4)) with labels offset 0,0.8 notitle
"""
    bl.gnuplot(script, "streaming")


if __name__ == "__main__":
    sys.exit(main())
