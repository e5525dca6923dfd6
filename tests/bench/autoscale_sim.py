#!/usr/bin/python3
"""Autoscaling on loopguard's demand signal, simulated: N pods behind a Service under a load ramp,
scaled by the HPA algorithm exactly as KEDA feeds it (deploy/kubernetes/*/autoscaling/keda.yaml),
with the delays that matter: Prometheus' scrape interval and rate window, the HPA's sync period,
its stabilisation windows and rate policies, and the time a new pod takes to become ready.

    tests/bench/autoscale_sim.py                 # measure one pod's capacity, then simulate
    tests/bench/autoscale_sim.py --no-measure    # use --service-ms and --workers instead

What is measured, not assumed: one pod's capacity. A real loopguard runs a pool of --workers test
workers (tests/integration/workers/test_worker.py burning --work-ms of CPU per request) behind a
pool route, driven by as many closed-loop clients as workers; the service times it records are
the distribution each simulated pod draws from. Everything else is the model:

- a pod: `workers x concurrency 1` slots, a FIFO queue bounded by --max-queue and the queue
  timeout of the variant (5 s, 30 s, 60 s); a request waiting longer is refused (queue_timeout),
  one arriving at a full queue too (queue_full); demand (in flight + queued) is integrated exactly
  as loopguard_route_demand_seconds_total;
- the Service: every request goes to a ready pod chosen at random (kube-proxy);
- Prometheus scrapes every pod every --scrape-s; rate() over --window-s;
- KEDA + HPA, every --sync-s: value = sum(rate(demand)) / one pod's capacity (the `demand`
  trigger) and the same scaled by total/served requests (`demand-with-refusals`), AverageValue
  target 0.7: desired = ceil(value / 0.7) unless within the HPA's 10 % tolerance; the larger of
  the two; scale-up at most +100 % or +4 pods per 15 s, no stabilisation; scale-down stabilised
  over 300 s, at most -50 % per 60 s; 2..--max-replicas;
- a new pod is ready --pod-start-s after the HPA asked for it.

Prints a Markdown table (p99 and refusals while the load ramps, per queue timeout) and writes
tests/bench/charts/autoscale.png. Pure Python, seeded: the same inputs give the same output.
The functions hpa_recommendation() and Hpa are also what tests/integration/test_autoscale_signal.py
computes desired replica counts with.
"""
import argparse
import collections
import heapq
import math
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TARGET = 0.7        # the triggers' threshold: 70 % of capacity
TOLERANCE = 0.1     # the HPA controller's default (--horizontal-pod-autoscaler-tolerance)


# ---- the HPA algorithm (kubernetes/pkg/controller/podautoscaler), as KEDA drives it ------------
def hpa_recommendation(current, value, target=TARGET, tolerance=TOLERANCE):
    """Replicas one External metric with an AverageValue target asks for: the usage ratio is
    value / (current x target); within the tolerance the count stays, else ceil(value / target)."""
    if current <= 0:
        return max(1, math.ceil(value / target))
    ratio = value / (current * target)
    if abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(value / target)


class Hpa:
    """The controller's loop for one HPA: the largest recommendation of its metrics, stabilised
    (scale-up over up_window s, scale-down over down_window s), limited by the rate policies,
    clamped to min..max."""

    def __init__(self, minimum=2, maximum=20, up_window=0, down_window=300, up_percent=100,
                 up_pods=4, up_period=15, down_percent=50, down_period=60):
        self.min, self.max = minimum, maximum
        self.up_window, self.down_window = up_window, down_window
        self.up_percent, self.up_pods, self.up_period = up_percent, up_pods, up_period
        self.down_percent, self.down_period = down_percent, down_period
        self.recommendations = collections.deque()   # (time, replicas)
        self.events = collections.deque()            # (time, change)

    def step(self, now, current, values):
        rec = max(hpa_recommendation(current, v) for v in values) if values else current
        self.recommendations.append((now, rec))
        horizon = max(self.up_window, self.down_window)
        while self.recommendations and now - self.recommendations[0][0] > horizon:
            self.recommendations.popleft()
        up, down = rec, rec
        for t, r in self.recommendations:
            if now - t <= self.up_window:
                up = min(up, r)
            if now - t <= self.down_window:
                down = max(down, r)
        desired = current
        if desired < up:
            desired = up
        if desired > down:
            desired = down
        # Rate policies, against the count at the start of each policy's period.
        if desired > current:
            start = current - sum(c for t, c in self.events if now - t < self.up_period and c > 0)
            limit = max(math.ceil(start * (1 + self.up_percent / 100)), start + self.up_pods)
            desired = min(desired, limit)
        elif desired < current:
            start = current - sum(c for t, c in self.events if now - t < self.down_period and c < 0)
            limit = math.ceil(start * (1 - self.down_percent / 100))
            desired = max(desired, limit)
        desired = max(self.min, min(self.max, desired))
        if desired != current:
            self.events.append((now, desired - current))
        while self.events and now - self.events[0][0] > max(self.up_period, self.down_period):
            self.events.popleft()
        return desired


# ---- one pod ------------------------------------------------------------------------------------
class Pod:
    def __init__(self, ident, now, ready_at, slots, max_queue, queue_timeout):
        self.id = ident
        self.ready_at = ready_at
        self.slots, self.max_queue, self.queue_timeout = slots, max_queue, queue_timeout
        self.in_flight = 0
        self.queue = collections.deque()   # [arrival, request id, alive]
        self.terminating = False
        # loopguard's counters
        self.demand_ms = 0.0
        self.level = 0
        self.last = now
        self.requests = 0
        self.rejected = 0
        self.samples = collections.deque()  # (t, demand, requests, rejected)

    def note(self, now):
        self.demand_ms += self.level * (now - self.last)
        self.last = now
        self.level = self.in_flight + len(self.queue)

    def demand_at(self, now):
        return self.demand_ms + self.level * (now - self.last)

    def ready(self, now):
        return not self.terminating and now >= self.ready_at

    def capacity(self, now):
        return self.slots if now >= self.ready_at else 0


class Sim:
    def __init__(self, args, service_s, queue_timeout, autoscale=True, seed=1):
        self.a = args
        self.service = service_s
        self.queue_timeout = queue_timeout
        self.autoscale = autoscale
        self.rng = random.Random(seed)
        self.events = []
        self.seq = 0
        self.pods = []
        self.next_pod = 0
        self.hpa = Hpa(minimum=2, maximum=args.max_replicas)
        self.per_pod_rps = args.workers / (sum(service_s) / len(service_s))
        self.results = []          # (arrival, outcome, latency)  outcome: ok | queue_full | queue_timeout
        self.timeline = []         # (t, offered rps, ready pods, desired)
        self.desired = 2

    # -- events
    def at(self, t, kind, *data):
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, data))

    def load(self, t):
        """Offered requests/s at time t: base, a linear ramp to --peak x base, a hold, and back."""
        a = self.a
        base = a.base_utilisation * 2 * self.per_pod_rps
        peak = base * a.peak
        up0, up1 = a.ramp_at, a.ramp_at + a.ramp_s
        down0 = up1 + a.hold_s
        down1 = down0 + a.ramp_s
        if t < up0 or t >= down1:
            return base
        if t < up1:
            return base + (peak - base) * (t - up0) / a.ramp_s
        if t < down0:
            return peak
        return peak - (peak - base) * (t - down0) / a.ramp_s

    def add_pod(self, now, ready_after):
        pod = Pod(self.next_pod, now, now + ready_after, self.a.workers, self.a.max_queue,
                  self.queue_timeout)
        self.next_pod += 1
        self.pods.append(pod)
        return pod

    def run(self):
        a = self.a
        for _ in range(2):
            self.add_pod(0.0, 0.0)
        self.at(0.0, "arrival")
        self.at(a.scrape_s, "scrape")
        self.at(a.sync_s, "sync")
        end = a.ramp_at + 2 * a.ramp_s + a.hold_s + a.tail_s
        rid = 0
        while self.events:
            t, _, kind, data = heapq.heappop(self.events)
            if t > end:
                break
            if kind == "arrival":
                rid += 1
                self.arrive(t, rid)
                rate = self.load(t)
                self.at(t + self.rng.expovariate(rate), "arrival")
            elif kind == "done":
                self.finish(t, *data)
            elif kind == "timeout":
                self.expire(t, *data)
            elif kind == "scrape":
                self.scrape(t)
                self.at(t + a.scrape_s, "scrape")
            elif kind == "sync":
                self.sync(t)
                self.at(t + a.sync_s, "sync")
        return self

    def arrive(self, now, rid):
        ready = [p for p in self.pods if p.ready(now)]
        if not ready:
            ready = [p for p in self.pods if not p.terminating]
        pod = self.rng.choice(ready)
        pod.requests += 1
        if pod.in_flight < pod.slots and now >= pod.ready_at:
            self.start(now, pod, now)
        elif len(pod.queue) < pod.max_queue:
            entry = [now, rid, True]
            pod.queue.append(entry)
            pod.note(now)
            self.at(now + self.queue_timeout, "timeout", pod, entry)
        else:
            pod.rejected += 1
            self.results.append((now, "queue_full", 0.0))

    def start(self, now, pod, arrival):
        pod.in_flight += 1
        pod.note(now)
        self.at(now + self.rng.choice(self.service), "done", pod, arrival)

    def finish(self, now, pod, arrival):
        pod.in_flight -= 1
        pod.note(now)
        self.results.append((arrival, "ok", now - arrival))
        self.pump(now, pod)
        if pod.terminating and pod.in_flight == 0 and not pod.queue:
            self.pods.remove(pod)

    def pump(self, now, pod):
        while pod.queue and pod.in_flight < pod.slots and now >= pod.ready_at:
            entry = pod.queue.popleft()
            if entry[2]:
                entry[2] = False
                pod.note(now)
                self.start(now, pod, entry[0])

    def expire(self, now, pod, entry):
        if not entry[2]:
            return
        entry[2] = False
        pod.queue.remove(entry)
        pod.note(now)
        pod.rejected += 1
        self.results.append((entry[0], "queue_timeout", now - entry[0]))

    def scrape(self, now):
        for pod in self.pods:
            pod.samples.append((now, pod.demand_at(now), pod.requests, pod.rejected))
            while pod.samples and now - pod.samples[0][0] > self.a.window_s:
                pod.samples.popleft()

    @staticmethod
    def rate(samples, i):
        if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
            return None
        return (samples[-1][i] - samples[0][i]) / (samples[-1][0] - samples[0][0])

    def signal(self, now):
        demand = total = rejected = 0.0
        any_series = False
        for pod in self.pods:
            d = self.rate(pod.samples, 1)
            if d is None:
                continue
            any_series = True
            demand += d
            total += self.rate(pod.samples, 2)
            rejected += self.rate(pod.samples, 3)
        capacity = max([p.capacity(now) for p in self.pods] + [1])
        if not any_series:
            return None
        first = demand / capacity
        factor = min(4.0, max(1.0, total / max(total - rejected, 0.01))) if total > 0 else 1.0
        return first, first * factor

    def sync(self, now):
        current = len([p for p in self.pods if not p.terminating])
        self.timeline.append((now, self.load(now), len([p for p in self.pods if p.ready(now)]),
                              current))
        if not self.autoscale:
            return
        values = self.signal(now)
        if values is None:
            return
        desired = self.hpa.step(now, current, list(values))
        while desired > current:
            self.add_pod(now, self.a.pod_start_s)
            current += 1
        if desired < current:
            # The ReplicaSet removes not-ready pods first, then the newest.
            victims = sorted([p for p in self.pods if not p.terminating],
                             key=lambda p: (p.ready(now), -p.id))[:current - desired]
            for p in victims:
                p.terminating = True
                if p.in_flight == 0 and not p.queue:
                    self.pods.remove(p)

    # -- figures
    def summary(self, t0, t1):
        window = [r for r in self.results if t0 <= r[0] < t1]
        ok = sorted(lat for _, outcome, lat in window if outcome == "ok")
        refused = [r for r in window if r[1] != "ok"]

        def pct(q):
            return ok[min(len(ok) - 1, int(math.ceil(q * len(ok))) - 1)] if ok else None
        return {"requests": len(window), "refused": len(refused),
                "refused_share": len(refused) / len(window) if window else 0.0,
                "timeouts": sum(1 for r in refused if r[1] == "queue_timeout"),
                "p50": pct(0.5), "p99": pct(0.99),
                "max_pods": max(x[3] for x in self.timeline) if self.timeline else 2}

    def buckets(self, width=10.0):
        """Per `width` s of arrival time: (t, p99 of served, refused/s)."""
        by = collections.defaultdict(list)
        for arrival, outcome, lat in self.results:
            by[int(arrival // width)].append((outcome, lat))
        out = []
        for k in sorted(by):
            ok = sorted(lat for o, lat in by[k] if o == "ok")
            p99 = ok[min(len(ok) - 1, int(math.ceil(0.99 * len(ok))) - 1)] if ok else float("nan")
            out.append((k * width, p99, sum(1 for o, _ in by[k] if o != "ok") / width))
        return out


# ---- measuring one pod --------------------------------------------------------------------------
def measure(args):
    """Service times of a real loopguard + pool of --workers test workers, at full load."""
    import http.client
    import threading
    import benchlib
    procs = benchlib.Procs()
    d = procs.workdir("autoscale")
    worker = os.path.join(benchlib.ROOT, "tests", "integration", "workers", "test_worker.py")
    cfg = os.path.join(d, "pod.yaml")
    with open(cfg, "w") as f:
        f.write(f"""listen: "127.0.0.1:0"
log: {{access_log: false, level: warn}}
pools:
  cpu:
    command: ["{benchlib.PYTHON}", "{worker}", "--uds", "{{socket}}"]
    workers: {args.workers}
    concurrency_per_worker: 1
    ready: {{path: /ready, timeout: 20s}}
routes:
  - name: cpu
    match: {{prefix: /}}
    pool: cpu
    limits: {{max_in_flight: {args.workers}, max_queue: 64, queue_timeout: 30s}}
""")
    log_path = os.path.join(d, "loopguard.log")
    with open(log_path, "w") as log_file:
        p = procs.start([benchlib.loopguard_bin(), "proxy", "--config", cfg, "--log-level", "info"],
                        stderr=log_file)
    port = None
    ready = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (port is None or ready < args.workers):
        with open(log_path) as f:
            text = f.read()
        for line in text.splitlines():
            if "[main] listening on" in line:
                port = int(line.rsplit(":", 1)[1])
        ready = text.count(") ready in ")
        time.sleep(0.05)
    if port is None or ready < args.workers:
        procs.cleanup()
        raise SystemExit(f"autoscale_sim: loopguard did not start:\n{text[-2000:]}")
    times, lock, stop = [], threading.Lock(), threading.Event()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            t0 = time.monotonic()
            conn.request("GET", f"/work?ms={args.work_ms}")
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                with lock:
                    times.append(time.monotonic() - t0)
        conn.close()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.workers)]
    for t in threads:
        t.start()
    time.sleep(1.0)            # warm-up, then measure
    with lock:
        times.clear()
    t0 = time.monotonic()
    time.sleep(args.measure_s)
    with lock:
        samples = list(times)
    elapsed = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(30)
    procs.stop(p)
    procs.cleanup()
    return samples, len(samples) / elapsed


def chart(path, runs, args):
    import benchlib
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    files = []
    for name, sim in runs:
        data = os.path.join(d, f".autoscale-{name}.dat")
        with open(data, "w") as f:
            b = {int(t): (p99, ref) for t, p99, ref in sim.buckets()}
            for t, offered, ready, desired in sim.timeline:
                p99, ref = b.get(int(t // 10 * 10), (float("nan"), 0.0))
                f.write(f"{t:.0f} {offered:.2f} {ready * sim.per_pod_rps:.2f} {ready} {desired} "
                        f"{p99 if p99 == p99 else 'NaN'} {ref:.3f}\n")
        files.append((name, data))
    colours = ["#2f5fd0", "#1a7f37", "#c62828", "#888888"]
    plot_cap = ", ".join(f"'{f}' using 1:3 with steps lw 2 lc rgb '{colours[i]}' title 'capacity, {n}'"
                         for i, (n, f) in enumerate(files))
    plot_p99 = ", ".join(f"'{f}' using 1:6 with lines lw 2 lc rgb '{colours[i]}' title '{n}'"
                         for i, (n, f) in enumerate(files))
    plot_ref = ", ".join(f"'{f}' using 1:7 with lines lw 2 lc rgb '{colours[i]}' title '{n}'"
                         for i, (n, f) in enumerate(files))
    script = f"""set terminal pngcairo size 1100,900 font 'DejaVu Sans,10'
set output '{path}'
set multiplot layout 3,1 title 'Simulated autoscaling on loopguard demand (KEDA/HPA formulas; measured pod: {args.workers} workers, {args.measured_rps:.0f} req/s)'
set grid
set key top right
set xrange [0:*]
set ylabel 'req/s'
set title 'offered load and ready capacity'
plot '{files[0][1]}' using 1:2 with lines lw 3 lc rgb 'black' title 'offered load', {plot_cap}
set title 'p99 latency of served requests (by arrival, 10 s buckets)'
set ylabel 'seconds'
set logscale y
plot {plot_p99}
unset logscale y
set title 'refused requests/s (queue full or queue timeout)'
set ylabel 'req/s'
set xlabel 'seconds'
plot {plot_ref}
unset multiplot
"""
    ok = benchlib.gnuplot(script, "autoscale")
    for _, f in files:
        os.remove(f)
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--no-measure", action="store_true", help="skip the measurement; use --service-ms")
    p.add_argument("--workers", type=int, default=2, help="workers per pod (slots, concurrency 1)")
    p.add_argument("--work-ms", type=int, default=50, help="CPU per request of the measured worker")
    p.add_argument("--measure-s", type=float, default=5.0)
    p.add_argument("--service-ms", type=float, default=50.0, help="service time without --measure")
    p.add_argument("--base-utilisation", type=float, default=0.5,
                   help="load before the ramp, as a share of 2 pods' capacity")
    p.add_argument("--peak", type=float, default=4.0, help="peak load / base load")
    p.add_argument("--ramp-at", type=float, default=120.0)
    p.add_argument("--ramp-s", type=float, default=60.0)
    p.add_argument("--hold-s", type=float, default=480.0)
    p.add_argument("--tail-s", type=float, default=480.0)
    p.add_argument("--max-queue", type=int, default=100_000,
                   help="per pod; large, so that the queue timeout is what bounds a wait")
    p.add_argument("--scrape-s", type=float, default=15.0)
    p.add_argument("--window-s", type=float, default=60.0, help="the triggers' rate() window")
    p.add_argument("--sync-s", type=float, default=15.0, help="HPA sync period (KEDA polling)")
    p.add_argument("--pod-start-s", type=float, default=45.0,
                   help="from the HPA's decision to a ready pod (schedule, pull, boot, workers ready)")
    p.add_argument("--max-replicas", type=int, default=20)
    p.add_argument("--chart", default=os.path.join(HERE, "charts", "autoscale.png"))
    args = p.parse_args()

    if args.no_measure:
        service = [args.service_ms / 1000.0]
        args.measured_rps = args.workers / service[0]
        measured = f"assumed: {args.service_ms:.0f} ms per request, {args.workers} workers"
    else:
        service, args.measured_rps = measure(args)
        service.sort()
        measured = (f"measured: {len(service)} requests of /work?ms={args.work_ms} on {args.workers} "
                    f"test workers behind loopguard: {args.measured_rps:.1f} req/s, service "
                    f"p50 {service[len(service) // 2] * 1000:.1f} ms, p99 "
                    f"{service[int(len(service) * 0.99)] * 1000:.1f} ms")
    print(f"# autoscale_sim — {time.strftime('%Y-%m-%d %H:%M')}\n")
    print(f"Per-pod capacity {measured}. Load {args.base_utilisation:.0%} of 2 pods, ramping "
          f"×{args.peak:g} over {args.ramp_s:.0f} s at t={args.ramp_at:.0f} s, held "
          f"{args.hold_s:.0f} s, back down. Scrape {args.scrape_s:.0f} s, rate window "
          f"{args.window_s:.0f} s, HPA sync {args.sync_s:.0f} s, pod start {args.pod_start_s:.0f} s, "
          f"target {TARGET}, min 2 pods. Figures: requests arriving from the ramp's start to 4 min "
          f"after it.\n")
    t0, t1 = args.ramp_at, args.ramp_at + args.ramp_s + 240
    runs = []
    rows = []
    variants = [("queue timeout 5 s", 5.0, True), ("queue timeout 30 s", 30.0, True),
                ("queue timeout 60 s", 60.0, True), ("no autoscaler, 30 s", 30.0, False)]
    for name, timeout, autoscale in variants:
        sim = Sim(args, service, timeout, autoscale=autoscale).run()
        runs.append((name, sim))
        s = sim.summary(t0, t1)
        need = math.ceil(args.base_utilisation * 2 * args.peak / TARGET)
        reached = next((t for t, _, ready, _ in sim.timeline if t >= t0 and ready >= need), None)
        rows.append([name, f"{s['requests']:,}", f"{s['refused_share']:.1%}",
                     f"{s['timeouts']:,}", f"{s['p50'] * 1000:.0f}" if s["p50"] else "–",
                     f"{s['p99']:.2f}" if s["p99"] else "–", str(s["max_pods"]),
                     f"{reached - t0:.0f}" if reached else "never"])
    import benchlib
    print(benchlib.markdown_table(
        ["variant", "requests", "refused", "of which queue timeouts", "p50 ms", "p99 s",
         "max pods", f"s until {math.ceil(args.base_utilisation * 2 * args.peak / TARGET)} pods ready"],
        rows))
    if chart(args.chart, runs, args):
        print(f"\nchart: {os.path.relpath(args.chart, os.getcwd())}")


if __name__ == "__main__":
    main()
