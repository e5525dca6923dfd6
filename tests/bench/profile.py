#!/usr/bin/python3
"""Where loopguard spends its time under load: perf or callgrind on the proxy, top functions.

Same set-up as proxy_overhead (nginx upstream `return 200` on CPU 0, loopguard alone on CPU 1,
access log off), small bodies, keep-alive.

  --tool perf       perf record -F 999 --call-graph dwarf on the running proxy for --duration
                    seconds while wrk -t1 -c50 drives it (kernel time included when the kernel
                    lets perf see it). Top functions by self and by inclusive ("children") share.
  --tool callgrind  loopguard under valgrind --tool=callgrind, wrk -t1 -c10 for --duration s
                    (callgrind slows it ~50x, so a few thousand requests); the proxy is stopped
                    with SIGTERM so the profile is written; top functions by self and inclusive
                    instruction count, also per request. User space only.

Output: both tables on stdout and results/profile-<tool>-<stamp>.txt (+ the raw profile file
perf.data / callgrind.out, kept next to it for perf report / kcachegrind).
Build loopguard Release with -g for symbols (see README.md).
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def perf_profile(procs, work, up, args, base):
    p = bl.Proxy(procs, "loopguard", work, up.port)
    if p.error:
        return f"loopguard unavailable: {p.error}", None
    bl.run_wrk(p.port, "/small", args.conns, 1)
    data = base + ".perf.data"
    rec = procs.start(["perf", "record", "-F", "999", "--call-graph", "dwarf,16384", "-o", data,
                       "-p", str(p.proc.pid), "--", "sleep", str(args.duration)],
                      stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    res, _out = bl.run_wrk(p.port, "/small", args.conns, args.duration)
    try:
        rec.wait(timeout=args.duration + 30)
    except subprocess.TimeoutExpired:
        pass
    procs.stop(rec)
    p.stop()
    if not os.path.exists(data):
        return "perf record wrote nothing (perf_event_paranoid? no perf?)", res
    out = [f"wrk -t1 -c{args.conns} -d{args.duration}s: {bl.fmt(res['rps'])} req/s, "
           f"{res['requests']} requests, p99 {bl.fmt(res['p99'], 2)} ms", ""]
    for title, flag in (("self", "--no-children"), ("inclusive (children)", "--children")):
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", flag, "--sort", "symbol",
                            "-g", "none", "--percent-limit", "0.3"],
                           capture_output=True, text=True, timeout=600)
        rows = [ln for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
        out.append(f"## top {args.top} by {title}")
        out.extend(rows[:args.top])
        out.append("")
    return "\n".join(out), res


def callgrind_profile(procs, work, up, args, base):
    if not shutil.which("valgrind"):
        return "valgrind not installed (apt-get install valgrind)", None
    cg = base + ".callgrind.out"
    p = bl.Proxy(procs, "loopguard", work, up.port,
                 wrapper=["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}",
                          "--dump-instr=no", "--collect-jumps=no"], start_timeout=60)
    if p.error:
        return f"loopguard under callgrind unavailable: {p.error}", None
    res, _out = bl.run_wrk(p.port, "/small", args.conns, args.duration, timeout_s=30)
    os.kill(p.proc.pid, signal.SIGTERM)  # graceful exit: callgrind writes its profile
    try:
        p.proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pass
    p.stop()
    if not os.path.exists(cg):
        return "callgrind wrote no profile", res
    n = res["requests"] or 0
    out = [f"wrk -t1 -c{args.conns} -d{args.duration}s against loopguard under callgrind: "
           f"{n} requests (the profile also covers start-up and shutdown)", ""]
    for title, incl in (("self", "no"), ("inclusive", "yes")):
        r = subprocess.run(["callgrind_annotate", f"--inclusive={incl}", "--threshold=100", cg],
                           capture_output=True, text=True, timeout=300)
        rows = []
        for ln in r.stdout.splitlines():
            m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*)", ln)
            if m and "PROGRAM TOTALS" not in ln:
                ir = int(m.group(1).replace(",", ""))
                per = f"{ir / n:10,.0f} Ir/req" if n else ""
                rows.append(f"{m.group(2):>6}%  {per}  {m.group(3)[:150]}")
        total = re.search(r"([\d,]+)\s+\(100.0%\)\s+PROGRAM TOTALS", r.stdout)
        if total and n:
            out.append(f"program total: {int(total.group(1).replace(',', '')) / n:,.0f} Ir per request")
        out.append(f"## top {args.top} by {title} instruction count")
        out.extend(rows[:args.top])
        out.append("")
    return "\n".join(out), res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", choices=["perf", "callgrind"], default="perf")
    ap.add_argument("--duration", type=int, default=None, help="seconds (perf 10, callgrind 3)")
    ap.add_argument("--conns", type=int, default=None, help="wrk connections (perf 50, callgrind 10)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--out-dir", default=bl.RESULTS)
    args = ap.parse_args()
    bl.RESULTS = args.out_dir
    if args.duration is None:
        args.duration = 10 if args.tool == "perf" else 3
    if args.conns is None:
        args.conns = 50 if args.tool == "perf" else 10
    missing = bl.ensure_tools(["wrk", "nginx"] + (["perf"] if args.tool == "perf" else []))
    if missing:
        print(f"profile: cannot run without {', '.join(missing)}", file=sys.stderr)
        return 2
    bl.set_budget(900)
    info = bl.machine_info()
    binary = bl.loopguard_bin()
    os.makedirs(bl.RESULTS, exist_ok=True)
    base = os.path.join(bl.RESULTS, f"profile-{args.tool}-{bl.stamp()}")
    procs = bl.Procs()
    work = procs.workdir("profile")
    text = ""
    try:
        up = bl.Upstream(procs, work)
        fn = perf_profile if args.tool == "perf" else callgrind_profile
        text, _res = fn(procs, work, up, args, base)
    except bl.BudgetExceeded as e:
        text = f"stopped: {e}"
    except RuntimeError as e:
        bl.log(f"setup failed: {e}")
        procs.cleanup()
        return 2
    finally:
        procs.cleanup()
        signal.alarm(0)
    header = (f"# profile ({args.tool}) — {info['date']}\n\nMachine: {info['nproc']} CPUs, "
              f"{info['cpu']}; load average at start {info['load_start']}\n"
              f"loopguard: {bl.describe_binary(binary)}\n\n")
    with open(base + ".txt", "w") as f:
        f.write(header + text + "\n")
    print(header + text)
    print(f"results: {base}.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
