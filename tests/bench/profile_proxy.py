#!/usr/bin/python3
"""Where loopguard spends its time under load: perf or callgrind on the proxy, top functions.

Same set-up as proxy_overhead (nginx upstream `return 200` on CPU 0, loopguard alone on CPU 1,
access log off), small bodies (or --path), keep-alive. --proxy nginx|haproxy profiles that proxy
instead (perf only), for a like-for-like look at where each spends its time and its system calls.

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
    p = bl.Proxy(procs, args.proxy, work, up.port)
    if p.error:
        return f"{args.proxy} unavailable: {p.error}", None
    pids = ",".join(str(pid) for pid in p.pids())
    bl.run_wrk(p.port, args.path, args.conns, 1)
    data = base + ".perf.data"
    rec = procs.start(["perf", "record", "-F", "999", "--call-graph", "dwarf,16384", "-o", data,
                       "-p", pids, "--", "sleep", str(args.duration)],
                      stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    res, _out = bl.run_wrk(p.port, args.path, args.conns, args.duration)
    try:
        rec.wait(timeout=args.duration + 30)
    except subprocess.TimeoutExpired:
        pass
    procs.stop(rec)
    if not os.path.exists(data):
        p.stop()
        return "perf record wrote nothing (perf_event_paranoid? no perf?)", res
    out = [f"{args.proxy}, wrk -t1 -c{args.conns} -d{args.duration}s {args.path}: "
           f"{bl.fmt(res['rps'])} req/s, "
           f"{res['requests']} requests, p99 {bl.fmt(res['p99'], 2)} ms (while perf records)", ""]
    reports = (("self, all (user [.] and kernel [k])", "--no-children", None),
               ("self, user space only", "--no-children", "[.]"),
               ("inclusive (children)", "--children", None))
    for title, flag, only in reports:
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", flag, "--sort", "symbol",
                            "-g", "none", "--percent-limit", "0.1"],
                           capture_output=True, text=True, timeout=600)
        rows = []
        for ln in r.stdout.splitlines():
            if not ln.strip() or ln.startswith("#"):
                continue
            ln = re.sub(r"\s+-\s+-\s*$", "", ln).rstrip()
            if only and only not in ln:
                continue
            rows.append(ln)
        out.append(f"## top {args.top} by {title}")
        out.extend(rows[:args.top])
        out.append("")
    r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso",
                        "-g", "none"], capture_output=True, text=True, timeout=600)
    out.append("## self time by binary (kernel = syscalls, loopback TCP, scheduling)")
    out.extend(ln.rstrip() for ln in r.stdout.splitlines()
               if ln.strip() and not ln.startswith("#"))
    out.append("")
    out.extend(syscalls_per_request(procs, p, args))
    p.stop()
    return "\n".join(out), res


def short_name(where):
    """'file:ns::fn(long, argument list) [/path/obj]' -> ('ns::fn()', 'obj')."""
    obj = ""
    m = re.match(r"(.*?)\s+\[(.*)\]$", where)
    if m:
        where, obj = m.group(1), os.path.basename(m.group(2))
    where = where.split(":", 1)[1] if re.match(r"^[^:(]*\.\w+:", where) or where.startswith("???:") \
        else where
    where = where.replace("std::__cxx11::basic_string<char, std::char_traits<char>, "
                          "std::allocator<char> >", "std::string")
    where = where.replace("std::basic_string_view<char, std::char_traits<char> >",
                          "std::string_view")
    # Drop the parameter list: the last balanced (...) group at the end.
    if where.endswith(")") or where.endswith(") const"):
        tail = " const" if where.endswith(" const") else ""
        body = where[: len(where) - len(tail)]
        depth = 0
        for i in range(len(body) - 1, -1, -1):
            if body[i] == ")":
                depth += 1
            elif body[i] == "(":
                depth -= 1
                if depth == 0:
                    where = body[:i] + "()" + tail
                    break
    return where, obj


SYSCALLS = ["read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg",
            "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "accept4", "connect",
            "socket", "close", "shutdown", "setsockopt", "getsockopt", "getsockname",
            "getpeername", "ioctl", "fcntl", "clock_gettime"]


def syscalls_per_request(procs, p, args, seconds=3):
    """System calls the proxy makes per request (perf stat on syscall tracepoints)."""
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for s in SYSCALLS]
    pids = ",".join(str(pid) for pid in p.pids())
    stat = procs.start(["perf", "stat", "-x", ",", "-e", ",".join(events), "-p", pids,
                        "--", "sleep", str(seconds)], stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)
    res, _ = bl.run_wrk(p.port, args.path, args.conns, seconds + 1)
    try:
        _, err = stat.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        procs.stop(stat)
        return ["(perf stat on syscall tracepoints timed out)"]
    procs.stop(stat)
    counts = {}
    for ln in err.splitlines():
        f = ln.split(",")
        if len(f) >= 3 and f[0].strip().isdigit():
            counts[f[2].split(":")[-1].replace("sys_enter_", "")] = int(f[0])
    if not counts or not res["rps"]:
        return ["(no syscall counts: tracepoints not available to perf here)", ""]
    # wrk ran one second longer than perf stat: use its rate over the counted seconds.
    reqs = res["rps"] * seconds
    lines = [f"## system calls per request (perf stat, {seconds} s, ~{reqs:,.0f} requests at "
             f"{res['rps']:,.0f} req/s)"]
    total = counts.pop("sys_enter", None)
    if total is not None:
        lines.append(f"{'all':>14}: {total / reqs:6.2f}")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if n:
            lines.append(f"{name:>14}: {n / reqs:6.2f}")
    return lines + [""]


def callgrind_profile(procs, work, up, args, base):
    if not shutil.which("valgrind"):
        return "valgrind not installed (apt-get install valgrind)", None
    cg = base + ".callgrind.out"
    p = bl.Proxy(procs, "loopguard", work, up.port,
                 wrapper=["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}",
                          "--dump-instr=no", "--collect-jumps=no"], start_timeout=60)
    if p.error:
        return f"loopguard under callgrind unavailable: {p.error}", None
    res, _out = bl.run_wrk(p.port, args.path, args.conns, args.duration, timeout_s=30)
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
    out.extend(callgrind_tables(cg, n, args.top))
    return "\n".join(out), res


def callgrind_tables(cg, n, top):
    """Top functions of a callgrind profile by self and inclusive Ir (and Ir per request)."""
    out = []
    for title, incl in (("self", "no"), ("inclusive", "yes")):
        r = subprocess.run(["callgrind_annotate", f"--inclusive={incl}", "--threshold=100",
                            "--auto=no", cg], capture_output=True, text=True, timeout=300)
        total = re.search(r"([\d,]+)\s+\(100.0%\)\s+PROGRAM TOTALS", r.stdout)
        if total and n and incl == "no":
            out.append(f"program total: {int(total.group(1).replace(',', '')) / n:,.0f} Ir "
                       "per request")
            out.append("")
        # Self cost: callgrind_annotate splits a function by source file (inlined headers), so
        # the parts are summed per function. Inclusive: each function is listed twice (with and
        # without its object file) and the list starts with the scaffolding (main, uv_run...):
        # one entry per function, those at >= 90% skipped.
        acc, objs, skipped = {}, {}, 0
        for ln in r.stdout.splitlines():
            m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*)", ln)
            if not m or "PROGRAM TOTALS" in ln:
                continue
            ir, pct, where = int(m.group(1).replace(",", "")), float(m.group(2)), m.group(3)
            name, obj = short_name(where)
            if incl == "yes":
                if not obj or name in acc:
                    continue
                if pct >= 90.0:
                    skipped += 1
                    continue
            cell = acc.setdefault(name, [0, 0.0])
            cell[0] += ir
            cell[1] += pct
            if obj:
                objs[name] = obj
        out.append(f"## top {top} by {title} instruction count")
        if skipped:
            out.append(f"(skipped {skipped} entries at >= 90%: main, the libuv loop, ...)")
        for name in sorted(acc, key=lambda k: -acc[k][0])[:top]:
            ir, pct = acc[name]
            per = f"{ir / n:8,.0f} Ir/req" if n else ""
            obj = f"  [{objs[name]}]" if name in objs else ""
            out.append(f"{pct:6.2f}%  {per}  {name}{obj}")
        out.append("")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", choices=["perf", "callgrind"], default="perf")
    ap.add_argument("--duration", type=int, default=None, help="seconds (perf 10, callgrind 3)")
    ap.add_argument("--conns", type=int, default=None, help="wrk connections (perf 50, callgrind 10)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--path", default="/small",
                    help="upstream path: /small, /files/16k.bin or /files/1m.bin")
    ap.add_argument("--proxy", choices=["loopguard", "nginx", "haproxy"], default="loopguard",
                    help="which proxy to profile (nginx and haproxy: perf only)")
    ap.add_argument("--out-dir", default=bl.RESULTS)
    args = ap.parse_args()
    bl.RESULTS = args.out_dir
    if args.duration is None:
        args.duration = 10 if args.tool == "perf" else 3
    if args.conns is None:
        args.conns = 50 if args.tool == "perf" else 10
    if args.tool == "callgrind" and args.proxy != "loopguard":
        ap.error("callgrind profiles loopguard only")
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
        up = bl.Upstream(procs, work, files={"16k.bin": 16384, "1m.bin": 1 << 20})
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
