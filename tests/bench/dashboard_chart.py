#!/usr/bin/python3
"""The panels of deploy/grafana/loopguard.json drawn from real data, without Grafana (Debian 12
ships none): loopguard with an offload pool and an upstream route, a scripted load (light, a
burst past the pool's limit, light again with one worker crash), a real Prometheus scraping it every
second, and each panel's own queries fetched with query_range and drawn with gnuplot.

    tests/bench/dashboard_chart.py [--seconds 90] [--out tests/bench/charts/dashboard.png]

The chart is labelled as what it is: the dashboard's queries, rendered by gnuplot. Grafana's
variables take these values: $__rate_interval = 5s (scrapes every 1 s), $job and $instance = all.
"""
import argparse
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import benchlib  # noqa: E402

PANELS = ["Requests/s by route", "Latency p50 / p99 by route", "In flight vs limit and capacity",
          "Queue depth", "Refusals/s by reason", "Demand / capacity", "Workers by state",
          "Worker restarts by reason", "loopguard event-loop lag"]
VARS = {"$__rate_interval": "5s", "$__interval": "1s", "$job": ".*", "$instance": ".*"}


def expand(expr):
    for k in sorted(VARS, key=len, reverse=True):
        expr = expr.replace(k, VARS[k])
    return expr


def legend(fmt, metric):
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out.replace("{{", "").replace("}}", "")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=90)
    p.add_argument("--out", default=os.path.join(HERE, "charts", "dashboard.png"))
    args = p.parse_args()
    os.environ.setdefault("LOOPGUARD_BIN", benchlib.loopguard_bin())

    import harness
    import prometheus_support as ps
    from load_support import Load, mixed_config
    from offload_support import wait_ready

    with open(os.path.join(ROOT, "deploy", "grafana", "loopguard.json")) as f:
        dash = json.load(f)
    panels = {pn["title"]: pn for pn in dash["panels"] if pn.get("targets")}
    missing = [t for t in PANELS if t not in panels]
    if missing:
        raise SystemExit(f"dashboard_chart: no panel {missing} in deploy/grafana/loopguard.json")

    reg = harness.ProcessRegistry("dashboard_chart")
    try:
        proxy = reg.proxy(mixed_config(reg.upstream("app"), max_queue=4, queue_timeout="300ms"))
        wait_ready(proxy, 2)
        prom = ps.Prometheus(reg.workdir, [f"127.0.0.1:{proxy.admin_port}"]).start()
        reg.on_cleanup(prom.stop)
        load = Load(proxy.port)
        reg.on_cleanup(load.stop)
        start = time.time()
        third = args.seconds / 3
        benchlib.log(f"light load for {third:.0f} s")
        load.set_clients("/cpu/sleep?ms=80", 1).set_clients("/api/delay?ms=10", 2)
        time.sleep(third)
        benchlib.log(f"a burst past the pool's limit for {third:.0f} s")
        load.set_clients("/cpu/sleep?ms=80", 8).set_clients("/api/delay?ms=10", 6)
        time.sleep(third)
        benchlib.log(f"light load again for {third:.0f} s, one worker crash")
        load.set_clients("/cpu/sleep?ms=80", 1).set_clients("/api/delay?ms=10", 2)
        time.sleep(third / 2)
        # A free slot now (the burst would refuse it): a worker exits mid-request.
        threading.Thread(target=harness.http_request, args=(proxy.port, "GET", "/cpu/crash?ms=0"),
                         daemon=True).start()
        time.sleep(third / 2)
        end = time.time()
        series = []
        for title in PANELS:
            lines = []
            for t in panels[title]["targets"]:
                for r in prom.query_range(expand(t["expr"]), start, end, 1):
                    pts = [(float(ts) - start, float(v)) for ts, v in r["values"]]
                    lines.append((legend(t.get("legendFormat", ""), r["metric"]), pts))
            series.append((title, panels[title]["fieldConfig"]["defaults"].get("unit", ""), lines))
        load.stop()
    finally:
        reg.cleanup()
    draw(args.out, series)
    print(f"chart: {os.path.relpath(args.out, os.getcwd())}")


def draw(out, series):
    d = os.path.join(os.path.dirname(out), ".dashboard-data")
    os.makedirs(d, exist_ok=True)
    plots = []
    for i, (title, unit, lines) in enumerate(series):
        parts = []
        for j, (name, pts) in enumerate(lines):
            path = os.path.join(d, f"p{i}-{j}.dat")
            with open(path, "w") as f:
                for x, y in pts:
                    f.write(f"{x:.1f} {y if y == y else 'NaN'}\n")
            parts.append(f"'{path}' using 1:2 with lines lw 2 title '{name.replace(chr(39), '')}'")
        ylabel = {"reqps": "req/s", "s": "seconds", "percentunit": "ratio", "bytes": "bytes",
                  "short": ""}.get(unit, unit)
        body = ", ".join(parts) if parts else "NaN notitle"
        plots.append(f"set title '{title}'\nset ylabel '{ylabel}'\nplot {body}\n")
    script = f"""set terminal pngcairo size 1500,1000 font 'DejaVu Sans,9'
set output '{out}'
set multiplot layout 3,3 title "Not Grafana: the queries of deploy/grafana/loopguard.json, rendered from a real Prometheus with gnuplot\\n(light load, a burst past the pool's limit, light again with one worker crash; seconds on x)"
set grid
set termoption noenhanced
set key top left font ',8'
set xrange [0:*]
set yrange [0:*]
{''.join(plots)}unset multiplot
"""
    ok = benchlib.gnuplot(script, "dashboard")
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    os.rmdir(d)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
