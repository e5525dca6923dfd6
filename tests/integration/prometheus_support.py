"""A real Prometheus (Debian's `prometheus`) for tests: started on a free loopback port with a
temporary config and storage folder, scraping the given targets every second, queried through
its HTTP API.

    prom = Prometheus(workdir, targets=["127.0.0.1:9901"], rule_files=[path]).start()
    # or targets=[("127.0.0.1:9901", {"namespace": "default", "pod": "a"}), ...]
    prom.wait_for_samples("loopguard_requests_total", 5)
    prom.query('sum(rate(loopguard_requests_total[5s]))')   # -> [{"metric": {...}, "value": [t, "1.5"]}]
    prom.stop()
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

from harness import file_tail

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SCRAPE_S = 1


class PrometheusError(AssertionError):
    pass


def available():
    return os.access(PROMETHEUS, os.X_OK) and os.access(PROMTOOL, os.X_OK)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric_names(expr):
    """The metric names an expression reads (identifiers followed by a selector or a range)."""
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", expr))
    return {n for n in names if n not in ("by", "without", "on", "ignoring", "group_left",
                                          "group_right", "bool")} - set(FUNCTIONS)


FUNCTIONS = ("rate", "irate", "increase", "sum", "max", "min", "avg", "count", "topk", "bottomk",
             "histogram_quantile", "max_over_time", "min_over_time", "avg_over_time", "abs",
             "clamp_min", "clamp_max", "ceil", "floor", "round", "vector", "scalar", "absent")


def as_bool_comparisons(expr):
    """The expression with every comparison against a number in its `bool` form (`x > bool 0.7`),
    so that it returns a series (0 or 1) for every input series instead of only those that pass:
    what proves an alert's expression is well-formed and finds its metrics, whatever the values."""
    return re.sub(r"(?<![=!~<>])(>=|<=|==|!=|>|<)(?!\s*bool)\s*(-?[0-9][0-9.e+-]*)\b",
                  r"\1 bool \2", expr)


class Prometheus:
    def __init__(self, workdir, targets, rule_files=(), job="loopguard", extra_scrape=()):
        self.workdir = workdir
        self.targets = list(targets)
        self.rule_files = list(rule_files)
        self.job = job
        self.extra_scrape = list(extra_scrape)
        self.port = None
        self.proc = None
        self.log_path = os.path.join(workdir, "prometheus.log")
        self.config_path = os.path.join(workdir, "prometheus.yml")
        self.storage = os.path.join(workdir, "prometheus-data")

    def write_config(self):
        lines = ["global:", f"  scrape_interval: {SCRAPE_S}s", f"  evaluation_interval: {SCRAPE_S}s",
                 f"  scrape_timeout: {SCRAPE_S}s"]
        if self.rule_files:
            lines.append("rule_files:")
            lines += [f"  - {json.dumps(p)}" for p in self.rule_files]
        lines += ["scrape_configs:", f"  - job_name: {json.dumps(self.job)}", "    static_configs:"]
        for target in self.targets:
            # "host:port", or ("host:port", {label: value}): labels a target carries, as a
            # Kubernetes PodMonitor adds namespace, pod and container.
            address, labels = (target, {}) if isinstance(target, str) else target
            lines.append(f"      - targets: [{json.dumps(address)}]")
            if labels:
                lines.append(f"        labels: {json.dumps(labels)}")
        lines += self.extra_scrape
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=30):
        self.write_config()
        r = subprocess.run([PROMTOOL, "check", "config", self.config_path], capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise PrometheusError(f"promtool check config:\n{r.stdout}{r.stderr}")
        for attempt in range(5):   # the port is free when chosen, but another test may take it
            self.port = free_port()
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config_path}",
                 f"--storage.tsdb.path={self.storage}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--storage.tsdb.retention.time=1h", "--log.level=warn",
                 "--web.enable-lifecycle"],
                stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.workdir)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if self._get("/-/ready")[0] == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.1)
            if self.proc.poll() is None:
                self.stop()
                raise PrometheusError(f"prometheus not ready within {timeout}s:\n{self.log_text()}")
            self._log.close()
            if "address already in use" not in self.log_text():
                break
        raise PrometheusError(f"prometheus exited with {self.proc.returncode}:\n{self.log_text()}")

    def _get(self, path, params=None, timeout=10):
        if params:
            path += "?" + urllib.parse.urlencode(params)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def api(self, path, **params):
        status, body = self._get("/api/v1/" + path, params)
        try:
            doc = json.loads(body)
        except ValueError:
            raise PrometheusError(f"{path}: HTTP {status}: {body[:300]!r}") from None
        if doc.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr, at=None):
        """An instant query; the list of results (a PrometheusError if the query is invalid)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] not in ("vector", "scalar"):
            raise PrometheusError(f"{expr}: unexpected result type {data['resultType']}")
        return data["result"] if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]

    def value(self, expr, at=None):
        """The single value of an instant query that must return exactly one series."""
        result = self.query(expr, at)
        if len(result) != 1:
            raise PrometheusError(f"{expr}: {len(result)} series, wanted 1: {result}")
        return float(result[0]["value"][1])

    def query_range(self, expr, start, end, step):
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}",
                        step=f"{step}")
        return data["result"]

    def samples(self, metric):
        """How many scrapes of `metric` Prometheus holds for the job (the most of any series)."""
        result = self.query(f'max(count_over_time({metric}{{job="{self.job}"}}[1h]))')
        return int(float(result[0]["value"][1])) if result else 0

    def wait_for_samples(self, metric, count, timeout=30):
        deadline = time.monotonic() + timeout
        while self.samples(metric) < count:
            if time.monotonic() >= deadline:
                raise PrometheusError(f"fewer than {count} scrapes of {metric} after {timeout}s; "
                                      f"targets: {self.api('targets')['activeTargets']}\n{self.log_text()}")
            time.sleep(0.2)

    def wait_next_scrape(self, timeout=10):
        """Returns once every target has been scraped again after this call."""
        start = time.time()
        deadline = time.monotonic() + timeout
        while True:
            targets = self.api("targets")["activeTargets"]
            if targets and all(t["health"] == "up" and _parse_time(t["lastScrape"]) > start
                               for t in targets):
                return
            if time.monotonic() >= deadline:
                raise PrometheusError(f"no fresh scrape within {timeout}s: {targets}")
            time.sleep(0.1)

    def alerts(self):
        return self.api("alerts")["alerts"]

    def log_text(self, tail=40):
        return file_tail(self.log_path, tail)

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)   # the group this object started
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        if getattr(self, "_log", None) and not self._log.closed:
            self._log.close()


def _parse_time(text):
    """Prometheus' RFC 3339 timestamps (nanosecond fractions) as Unix seconds."""
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        return 0.0
    import calendar
    secs = calendar.timegm(tuple(int(m.group(i)) for i in range(1, 7)) + (0, 0, 0))
    frac = float(m.group(7) or 0)
    tz = m.group(8)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs + frac


def promtool(*args, timeout=60):
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
