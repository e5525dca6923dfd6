#!/usr/bin/python3
"""What a proxy costs: the same fixed upstream reached directly, through loopguard, through nginx
and through HAProxy, alternated within one run.

Upstream: nginx, 1 worker — `return 200` with a 24-byte body on /small, static files of 16 KiB
and 1 MiB under /files/. Proxies: loopguard (access log off), nginx (1 worker, upstream keepalive
64, proxy_http_version 1.1, access_log off, 8 x 64 KiB proxy buffers), HAProxy (nbthread 1,
http-reuse always, keep-alive on both sides). All three add X-Forwarded-For / X-Forwarded-Proto,
as loopguard always does.

Scenarios (wrk -t1 --latency, keep-alive): small body c=50, 16 KiB c=50, 1 MiB c=50, small body
with 1,000 concurrent connections (idle upstream pool 64, as everywhere else, then 1024). Each
round runs every scenario for every variant (the variant order rotates each round; each
measurement is preceded by a short warm-up); cells report medians over rounds; the "x nginx"
columns are the ratio of those medians to nginx's, followed by the lowest and highest ratio to
nginx within one round (how much the rounds disagree). CPU per request: utime+stime of the
proxy's processes (for nginx, master + worker) over the measured run, divided by the requests wrk
completed; on the "direct" row it is the upstream's own CPU per request, for scale.

Pinning (2+ CPUs): the proxy alone on CPU 1; wrk and the upstream share CPU 0. See README.md.
Output: Markdown table on stdout; results/proxy_overhead-<stamp>.{md,json,dat,png}.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

SCENARIOS = {
    #  name        path              conns  idle upstream pool  label
    "small": ("/small", 50, 64, "small body, c=50"),
    "16k": ("/files/16k.bin", 50, 64, "16 KiB body, c=50"),
    "1m": ("/files/1m.bin", 50, 64, "1 MiB body, c=50"),
    "c1000": ("/small", 1000, 64, "small body, c=1000"),
    "c1000-pool1024": ("/small", 1000, 1024, "small body, c=1000, pool 1024"),
}
CHART_LABELS = {"small": "small, c=50", "16k": "16 KiB, c=50", "1m": "1 MiB, c=50",
                "c1000": "small, c=1000", "c1000-pool1024": "c=1000, pool 1024"}
# With 1,000 requests in flight and only 64 idle upstream connections kept, every proxy keeps
# opening and closing upstream connections (connect churn): "c1000" measures that path,
# "c1000-pool1024" (idle pool 1024 in all three proxies) the client-side scale alone. Its direct
# row would repeat c1000's, so direct is not run there.
VARIANTS = ["direct", "loopguard", "nginx", "haproxy"]
OPTIONAL_VARIANTS = ["loopguard-baseline"]  # --variants ...,loopguard-baseline (see benchlib)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=3, help="seconds per measured run (3)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of warm-up before each (1)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out-dir", default=bl.RESULTS)
    ap.add_argument("--no-pin", action="store_true",
                    help="let the scheduler place every process (as a plain `wrk` run would): "
                         "the proxy then competes with wrk and the upstream for both cores")
    ap.add_argument("--from-json", metavar="FILE",
                    help="measure nothing: print the table and redraw the chart of a past run")
    args = ap.parse_args()
    bl.RESULTS = args.out_dir
    if args.no_pin:
        bl.PINNING = False
    if args.from_json:
        with open(args.from_json) as f:
            past = json.load(f)
        for k in ("duration", "warmup", "rounds"):
            setattr(args, k, past["args"][k])
        report(past["runs"], [s for s in SCENARIOS if any(r["scenario"] == s for r in past["runs"])],
               VARIANTS + OPTIONAL_VARIANTS, past.get("unavailable", {}), past["machine"],
               past.get("binary"), args)
        return 0
    scenarios = [s for s in args.scenarios.split(",") if s in SCENARIOS]
    variants = [v for v in args.variants.split(",") if v in VARIANTS + OPTIONAL_VARIANTS]

    missing = bl.ensure_tools(["wrk", "nginx"])
    if missing:
        print(f"proxy_overhead: cannot run without {', '.join(missing)} "
              "(deploy/install-deps.sh --bench)", file=sys.stderr)
        return 2

    per_run = args.duration + args.warmup + 1.5
    budget = len(scenarios) * len(variants) * args.rounds * per_run * 2 + 180
    bl.set_budget(budget)
    nofile = bl.raise_nofile(65536)
    info = bl.machine_info()
    binary = bl.loopguard_bin()
    bl.log(f"{info['nproc']} CPUs ({info['cpu']}), nofile {nofile}, pinning "
           f"{'proxy on CPU 1, wrk + upstream on CPU 0' if bl.PINNING else 'off'}; "
           f"loopguard: {bl.describe_binary(binary)}; budget {budget:.0f} s")

    procs = bl.Procs()
    work = procs.workdir("overhead")
    runs = []  # one dict per measured run
    unavailable = {}
    def rounds():
        up = bl.Upstream(procs, work, files={"16k.bin": 16 * 1024, "1m.bin": 1024 * 1024})
        proxies = {}  # (variant, pool) -> Proxy
        for pool in sorted({SCENARIOS[s][2] for s in scenarios}):
            for v in variants:
                if v == "direct" or v in unavailable:
                    continue
                p = bl.Proxy(procs, v, work, up.port, nofile=min(nofile, 20000), pool=pool,
                             tag=f"-pool{pool}")
                if p.error:
                    unavailable[v] = p.error
                    bl.log(f"{v}: unavailable: {p.error}")
                else:
                    proxies[(v, pool)] = p
        # Sanity: every variant answers every scenario's path with the right body size.
        want_len = {"/small": len(bl.SMALL_BODY), "/files/16k.bin": 16384, "/files/1m.bin": 1 << 20}
        for key in list(proxies):
            for path, n in want_len.items():
                status, body = bl.http_get(proxies[key].port, path, timeout=5)
                if status != 200 or len(body) != n:
                    unavailable[key[0]] = f"GET {path}: status {status}, {len(body)} bytes (want {n})"
                    bl.log(f"{key[0]}: unavailable: {unavailable[key[0]]}")
                    proxies.pop(key).stop()
                    break

        for rnd in range(args.rounds):
            for si, sc in enumerate(scenarios):
                path, conns, pool, _label = SCENARIOS[sc]
                active = [v for v in variants if (v == "direct" and pool == 64)
                          or (v, pool) in proxies]
                if not active:
                    continue
                k = (rnd + si) % len(active)
                order = active[k:] + active[:k]
                for v in order:
                    port = up.port if v == "direct" else proxies[(v, pool)].port
                    if args.warmup > 0:
                        bl.run_wrk(port, path, conns, args.warmup)
                    pids = up.pids() if v == "direct" else proxies[(v, pool)].pids()
                    t0 = bl.cpu_ticks(pids)
                    res, out = bl.run_wrk(port, path, conns, args.duration)
                    t1 = bl.cpu_ticks(pids)
                    cpu_us = None
                    if res["requests"]:
                        cpu_us = (t1 - t0) / bl.CLK_TCK * 1e6 / res["requests"]
                    res.update(round=rnd, scenario=sc, variant=v, cpu_us=cpu_us)
                    if res["rps"] is None:
                        res["raw"] = out[-600:]
                    runs.append(res)
                    bl.log(f"round {rnd + 1}/{args.rounds} {sc:6s} {v:9s} "
                           f"{bl.fmt(res['rps'])} req/s p50 {bl.fmt(res['p50'], 2)} ms "
                           f"p99 {bl.fmt(res['p99'], 2)} ms cpu {bl.fmt(cpu_us, 1)} us/req "
                           f"err {res['errors'] + res['non2xx']}")

    if not bl.measure_rounds(procs, runs, rounds):
        return 2

    info["load_end"] = bl.loadavg()
    report(runs, scenarios, variants, unavailable, info, binary, args)
    return 0


def summarize(runs, scenarios, variants):
    """Medians over rounds per (scenario, variant). x_nginx / p99_x_nginx: ratio of the medians;
    *_range: lowest and highest same-round ratio (how much the rounds disagree)."""
    rows = []
    for sc in scenarios:
        ref = {r["round"]: r for r in runs if r["scenario"] == sc and r["variant"] == "nginx"}
        ref_rps = bl.median([r["rps"] for r in ref.values()])
        ref_p99 = bl.median([r["p99"] for r in ref.values()])
        for v in variants:
            mine = [r for r in runs if r["scenario"] == sc and r["variant"] == v]
            if not mine:
                continue
            ratio_rps = [r["rps"] / ref[r["round"]]["rps"] for r in mine
                         if r["round"] in ref and r["rps"] and ref[r["round"]]["rps"]]
            ratio_p99 = [r["p99"] / ref[r["round"]]["p99"] for r in mine
                         if r["round"] in ref and r["p99"] and ref[r["round"]]["p99"]]
            row = {
                "scenario": sc, "variant": v, "rounds": len(mine),
                "rps": bl.median([r["rps"] for r in mine]),
                "p50": bl.median([r["p50"] for r in mine]),
                "p99": bl.median([r["p99"] for r in mine]),
                "cpu_us": bl.median([r["cpu_us"] for r in mine]),
                "errors": sum(r["errors"] + r["non2xx"] for r in mine),
                "x_nginx_range": [min(ratio_rps), max(ratio_rps)] if ratio_rps else None,
                "p99_x_nginx_range": [min(ratio_p99), max(ratio_p99)] if ratio_p99 else None,
            }
            row["x_nginx"] = row["rps"] / ref_rps if row["rps"] and ref_rps else None
            row["p99_x_nginx"] = row["p99"] / ref_p99 if row["p99"] and ref_p99 else None
            rows.append(row)
    return rows


def ratio(value, rng, variant):
    if value is None:
        return "—"
    if variant == "nginx" or not rng:
        return f"{value:.2f}"
    return f"{value:.2f} ({rng[0]:.2f}–{rng[1]:.2f})"


def report(runs, scenarios, variants, unavailable, info, binary, args):
    rows = summarize(runs, scenarios, variants)
    headers = ["scenario", "variant", "req/s", "× nginx", "p50 ms", "p99 ms", "p99 × nginx",
               "CPU µs/req", "errors"]
    table = []
    for r in rows:
        cpu = bl.fmt(r["cpu_us"], 1)
        if r["variant"] == "direct" and r["cpu_us"] is not None:
            cpu += " (upstream)"
        table.append([SCENARIOS[r["scenario"]][3], r["variant"], bl.fmt(r["rps"]),
                      ratio(r["x_nginx"], r["x_nginx_range"], r["variant"]),
                      bl.fmt(r["p50"], 2), bl.fmt(r["p99"], 2),
                      ratio(r["p99_x_nginx"], r["p99_x_nginx_range"], r["variant"]), cpu,
                      r["errors"]])
    md = bl.markdown_table(headers, table, left={0, 1})
    for v, why in unavailable.items():
        md += f"\n\n{v}: unavailable — {why}"
    header = bl.report_header("proxy_overhead", info, binary, "wrk (-t1) + upstream nginx", [
        f"{args.rounds} rounds × {args.duration} s (+{args.warmup} s warm-up) per cell, variants "
        "alternated, medians; × nginx = ratio of the medians (in brackets: lowest–highest "
        "same-round ratio). CPU µs/req: utime+stime of the proxy's processes / requests.",
    ])
    bl.publish("proxy_overhead", header, md,
               {"machine": info, "args": vars(args), "binary": binary, "summary": rows,
                "runs": runs, "unavailable": unavailable},
               lambda base: chart(rows, scenarios, variants, base))


def chart(rows, scenarios, variants, base):
    present = [v for v in variants if any(r["variant"] == v for r in rows)]
    if not rows or not present:
        return
    # One line per scenario: label, then rps, p99, cpu for each present variant ("?" = missing).
    with open(base + ".dat", "w") as f:
        f.write("# scenario " + " ".join(f"{v}_rps {v}_p99 {v}_cpu" for v in present) + "\n")
        for sc in scenarios:
            cells = []
            for v in present:
                r = next((x for x in rows if x["scenario"] == sc and x["variant"] == v), None)
                for key in ("rps", "p99", "cpu_us"):
                    val = r[key] if r else None
                    cells.append("?" if val is None else f"{val:.4g}")
            f.write(f"\"{CHART_LABELS.get(sc, sc)}\" " + " ".join(cells) + "\n")
    colors = {"direct": "#999999", "loopguard": "#1b9e77", "nginx": "#d95f02", "haproxy": "#7570b3",
              "loopguard-baseline": "#66a61e"}

    def panel(title, ylabel, offset, log_y, key):
        plots = []
        for i, v in enumerate(present):
            col = 2 + i * 3 + offset
            xt = ":xtic(1)" if i == 0 else ""
            plots.append(f"'{base}.dat' using {col}{xt} title '{v}' lc rgb '{colors.get(v, '#000000')}'")
        title = title.replace("'", "''")
        return (f"set title '{title}'\nset ylabel '{ylabel}'\n"
                + ("set logscale y\n" if log_y else "unset logscale y\n")
                + ("set key top right\n" if key else "unset key\n")
                + "plot " + ", ".join(plots) + "\n")

    script = f"""set terminal pngcairo size 1200,1000 font "sans,10"
set output '{base}.png'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set logscale y
set multiplot layout 3,1 title "proxy overhead: medians, wrk -t1 keep-alive (log scales)"
""" + panel("throughput, req/s (higher is better)", "req/s", 0, True, True) \
        + panel("p99 latency, ms (lower is better)", "ms", 1, True, False) \
        + panel("CPU per request of the proxy's processes (direct: the upstream), µs", "µs/req",
                2, True, False) + "unset multiplot\n"
    bl.gnuplot(script, "proxy_overhead")


if __name__ == "__main__":
    sys.exit(main())
