"""Shared plumbing for the proxy benchmarks (proxy_overhead, memory, streaming).

Everything here runs on 127.0.0.1 with ports chosen free at start. Every process a benchmark
starts goes through Procs, which puts it in its own session (process group) and kills that group
when the benchmark ends, however it ends (normal exit, exception, SIGINT/SIGTERM/SIGHUP, or the
time budget running out). Children also get PR_SET_PDEATHSIG so they die with the driver even if
the driver itself is SIGKILLed.

CPU placement on a 2-core machine (see README.md): the proxy under test alone on PROXY_CPU (1),
the load generator and the fixed upstream together on CLIENT_CPU (0). With fewer than 2 CPUs the
pinning is skipped and said so.
"""
import atexit
import ctypes
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RESULTS = os.path.join(HERE, "results")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

CLIENT_CPU = 0
PROXY_CPU = 1
PINNING = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BudgetExceeded(Exception):
    """The benchmark's overall time budget ran out: report what was measured so far."""


def set_budget(seconds):
    """Raise BudgetExceeded in the main thread after `seconds` (a hard upper bound on a run)."""
    def on_alarm(_sig, _frame):
        raise BudgetExceeded(f"time budget of {seconds:.0f} s exceeded")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(seconds)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want=65536):
    """Raise RLIMIT_NOFILE (soft, and hard when allowed) toward `want`; children inherit it.
    Returns the soft limit in force afterwards."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target_hard in (max(hard, want), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, target_hard), target_hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "load_start": loadavg(),
            "pinning": PINNING}


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def stamp():
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- processes

_libc = None


def _pdeathsig():
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Procs:
    """Every process a benchmark starts; stop_all() kills each one's process group."""

    def __init__(self):
        self.procs = []
        self.dirs = []
        atexit.register(self.cleanup)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, sig, _frame):
        self.cleanup()
        raise SystemExit(128 + sig)

    def start(self, cmd, cpu=None, stdout=None, stderr=None, stdin=subprocess.DEVNULL, text=False):
        if cpu is not None and PINNING:
            cmd = ["taskset", "-c", str(cpu)] + list(cmd)
        p = subprocess.Popen(cmd, stdin=stdin, stdout=stdout or subprocess.DEVNULL,
                             stderr=stderr or subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=_pdeathsig, text=text)
        self.procs.append(p)
        return p

    def stop(self, p, grace=3.0):
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        try:  # the group may hold children (nginx workers) that outlive the leader
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p, grace=1.0)

    def workdir(self, prefix):
        """A temporary folder, removed at exit once every process is stopped."""
        d = tempfile.mkdtemp(prefix=f"loopguard-bench-{prefix}-")
        self.dirs.append(d)
        return d

    def cleanup(self):
        self.stop_all()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs = []


# ---------------------------------------------------------------- /proc

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()  # fields from #3 (state) on


def children_of(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(entry)[1]) == pid:
                    out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def tree(pid):
    """pid and all its descendants."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(children_of(p))
    return seen


def cpu_ticks(pids):
    """utime + stime of the given processes, in clock ticks."""
    total = 0
    for pid in pids:
        try:
            f = _stat_fields(pid)
            total += int(f[11]) + int(f[12])  # fields 14 and 15 (utime, stime)
        except (OSError, ValueError, IndexError):
            pass
    return total


def status_kib(pid, key):
    """A 'kB' field of /proc/PID/status (VmRSS, VmHWM, ...), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def process_of(p):
    """The pid of the real program behind a Popen (taskset execs, so it is the same pid)."""
    return p.pid


# ---------------------------------------------------------------- HTTP checks

def http_get(port, path, timeout=3.0, host="127.0.0.1"):
    """(status, body bytes) for a plain GET with Connection: close, or (None, error text)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while True:
                b = s.recv(1 << 16)
                if not b:
                    break
                chunks.append(b)
        data = b"".join(chunks)
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in head.lower():
            body = _dechunk(body)
        return status, body
    except Exception as e:  # noqa: BLE001 - any failure is "not (yet) serving"
        return None, str(e).encode()


def _dechunk(body):
    out, i = [], 0
    while True:
        j = body.find(b"\r\n", i)
        if j < 0:
            break
        size = int(body[i:j].split(b";")[0], 16)
        if size == 0:
            break
        out.append(body[j + 2:j + 2 + size])
        i = j + 2 + size + 2
    return b"".join(out)


def wait_http(port, path="/small", timeout=15.0, proc=None):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False, f"exited with {proc.returncode}"
        status, body = http_get(port, path, timeout=1.0)
        if status == 200:
            return True, ""
        last = f"status {status}: {body[:200]!r}"
        time.sleep(0.1)
    return False, f"not serving after {timeout:.0f} s ({last})"


# ---------------------------------------------------------------- the servers

SMALL_BODY = "hello from the upstream\n"


class Upstream:
    """The fixed upstream: nginx, 1 worker, `return 200` for /small and static files under /files/."""

    def __init__(self, procs, workdir, files=None, cpu=CLIENT_CPU):
        """files: {name: size in bytes}; large ones are sparse (no disk used)."""
        self.dir = os.path.join(workdir, "upstream")
        www = os.path.join(self.dir, "www", "files")
        os.makedirs(www, exist_ok=True)
        for name, size in (files or {}).items():
            path = os.path.join(www, name)
            with open(path, "wb") as f:
                if size <= (1 << 24):
                    f.write((b"0123456789abcdef" * (size // 16 + 1))[:size])
                else:
                    f.truncate(size)
            os.chmod(path, 0o644)
        for d in (workdir, self.dir, os.path.dirname(www), www):
            os.chmod(d, 0o755)
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_common(self.dir) + f"""
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 600s;
    keepalive_requests 1000000000;
{nginx_temp_paths(self.dir)}
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        location = /small {{ default_type text/plain; return 200 "{SMALL_BODY.strip()}\\n"; }}
        location /files/ {{ root {os.path.dirname(www)}; }}
    }}
}}
""")
        self.proc = procs.start(["nginx", "-p", self.dir, "-c", conf], cpu=cpu,
                                stderr=open(os.path.join(self.dir, "stderr.log"), "wb"))
        ok, why = wait_http(self.port, "/small", proc=self.proc)
        if not ok:
            raise RuntimeError(f"upstream nginx: {why}; {_tail(os.path.join(self.dir, 'error.log'))}")

    def pids(self):
        return tree(self.proc.pid)


def nginx_common(d, nofile=20000, worker_connections=19000):
    return f"""worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {worker_connections}; }}
"""


def nginx_temp_paths(d):
    return "\n".join(f"    {k}_temp_path {d}/{k}_temp;"
                     for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


class Proxy:
    """One proxy under test. name: loopguard | nginx | nginx-defaults | haproxy. pids() is its
    process tree. nginx-defaults is nginx without the 64 KiB proxy buffers (its own 4/8 KiB)."""

    LABELS = {
        "direct": "direct to the upstream (no proxy)",
        "loopguard": "loopguard (1 event loop)",
        "loopguard-baseline": "loopguard from $LOOPGUARD_BASELINE_BIN (before/after comparisons)",
        "nginx": "nginx 1 worker, upstream keepalive 64",
        "nginx-defaults": "nginx 1 worker, default proxy buffers",
        "haproxy": "HAProxy nbthread 1, http-reuse always",
    }

    def __init__(self, procs, name, workdir, upstream_port, nofile=20000, cpu=PROXY_CPU, pool=64,
                 tag="", wrapper=(), start_timeout=15.0):
        """pool: idle upstream connections kept (loopguard max_idle_connections, nginx keepalive,
        HAProxy pool-max-conn). wrapper: a command prefix (valgrind ...) for profiling."""
        self.name = name
        self.pool = pool
        self.procs = procs
        self.dir = os.path.join(workdir, name + tag)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.proc = None
        self.error = None
        err = open(os.path.join(self.dir, "stderr.log"), "wb")
        try:
            if name == "loopguard":
                cmd = self._loopguard(upstream_port, nofile, loopguard_bin())
            elif name == "loopguard-baseline":
                cmd = self._loopguard(upstream_port, nofile, baseline_bin())
            elif name in ("nginx", "nginx-defaults"):
                cmd = self._nginx(upstream_port, nofile, tuned_buffers=name == "nginx")
            elif name == "haproxy":
                cmd = self._haproxy(upstream_port, nofile)
            else:
                raise ValueError(name)
        except RuntimeError as e:
            self.error = str(e)
            return
        self.proc = procs.start(list(wrapper) + cmd, cpu=cpu, stderr=err, stdout=err)
        ok, why = wait_http(self.port, "/small", proc=self.proc, timeout=start_timeout)
        if not ok:
            self.error = f"{why}; see {err.name}: {_tail(err.name)}"
            procs.stop(self.proc)
            self.proc = None

    def _loopguard(self, up, nofile, binary):
        if not binary:
            raise RuntimeError(f"no binary for {self.name} (LOOPGUARD_BIN or build-bench/; "
                               "LOOPGUARD_BASELINE_BIN for loopguard-baseline)")
        conf = os.path.join(self.dir, "loopguard.yaml")
        with open(conf, "w") as f:
            f.write(f"""listen: "127.0.0.1:{self.port}"
log: {{access_log: false, level: warn}}
limits: {{max_connections: {max(1000, nofile - 500)}}}
timeouts: {{idle: 600s, header: 60s}}
upstreams:
  app:
    endpoints: ["127.0.0.1:{up}"]
    max_idle_connections: {self.pool}
routes:
  - name: default
    match: {{prefix: /}}
    upstream: app
""")
        return [binary, "proxy", "--config", conf]

    def _nginx(self, up, nofile, tuned_buffers=True):
        conf = os.path.join(self.dir, "nginx.conf")
        buffers = """
            # nginx's default 4k/8k proxy buffers cost it ~4x on 1 MiB bodies (measured here:
            # 355 vs 1,448 req/s, 1.8 ms vs 0.4 ms CPU per request): give it 64 KiB buffers so
            # the baseline is a tuned nginx. Memory only, never a temp file (streaming.py).
            proxy_buffer_size 64k;
            proxy_buffers 8 64k;
            proxy_busy_buffers_size 128k;""" if tuned_buffers else ""
        with open(conf, "w") as f:
            f.write(nginx_common(self.dir, nofile, nofile - 500) + f"""
http {{
    access_log off;
    keepalive_timeout 600s;
    keepalive_requests 1000000000;
{nginx_temp_paths(self.dir)}
    upstream app {{
        server 127.0.0.1:{up};
        keepalive {self.pool};
        keepalive_requests 1000000000;
        keepalive_timeout 600s;
    }}
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;{buffers}
            proxy_max_temp_file_size 0;
        }}
    }}
}}
""")
        return ["nginx", "-p", self.dir, "-c", conf]

    def _haproxy(self, up, nofile):
        if not shutil.which("haproxy"):
            raise RuntimeError("haproxy not installed (deploy/install-deps.sh --bench)")
        conf = os.path.join(self.dir, "haproxy.cfg")
        # HAProxy wants about 2 x maxconn fds (a server side for every client connection) and by
        # default refuses to start when the hard nofile limit is lower. Idle keep-alive client
        # connections have no server side, so with `no strict-limits` a 20000-fd limit still holds
        # 10,000+ idle clients (the memory benchmark); HAProxy then only warns.
        with open(conf, "w") as f:
            f.write(f"""global
    nbthread 1
    maxconn {max(1000, nofile // 2 + 300)}
    no strict-limits
    pidfile {self.dir}/haproxy.pid

defaults
    mode http
    option http-keep-alive
    http-reuse always
    option forwardfor
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-request 60s
    timeout http-keep-alive 600s

frontend fe
    bind 127.0.0.1:{self.port}
    http-request set-header X-Forwarded-Proto http
    default_backend be

backend be
    server app 127.0.0.1:{up} pool-max-conn {self.pool}
""")
        return ["haproxy", "-db", "-f", conf]

    def pids(self):
        return tree(self.proc.pid) if self.proc else []

    def main_pid(self):
        """The process whose memory is the proxy's: nginx's worker, else the process itself."""
        if not self.proc:
            return None
        if self.name.startswith("nginx"):
            kids = children_of(self.proc.pid)
            return kids[0] if kids else self.proc.pid
        return self.proc.pid

    def stop(self):
        if self.proc:
            self.procs.stop(self.proc)
            self.proc = None


def _tail(path, n=300):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace").strip()
    except OSError:
        return ""


def loopguard_bin():
    env = os.environ.get("LOOPGUARD_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    for rel in ("build-bench/loopguard", "build/loopguard"):
        p = os.path.join(ROOT, rel)
        if os.access(p, os.X_OK):
            return p
    return None


def baseline_bin():
    """A second loopguard binary (LOOPGUARD_BASELINE_BIN), run as the variant "loopguard-baseline"
    alongside "loopguard" in the same rounds: a change measured against what it replaces."""
    env = os.environ.get("LOOPGUARD_BASELINE_BIN")
    return env if env and os.access(env, os.X_OK) else None


def describe_binary(path):
    if not path:
        return "none"
    build = os.path.dirname(path)
    btype = "?"
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            m = re.search(r"^CMAKE_BUILD_TYPE:STRING=(.*)$", f.read(), re.M)
            btype = m.group(1) if m else "?"
    except OSError:
        pass
    return f"{path} ({btype})"


# ---------------------------------------------------------------- wrk

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * _UNIT[m.group(2)] if m else None


def parse_wrk(out):
    r = {"rps": None, "requests": None, "p50": None, "p99": None, "errors": 0, "non2xx": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        if m:
            r[key] = _ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    return r


def run_wrk(port, path, conns, seconds, threads=1, cpu=CLIENT_CPU, timeout_s=10):
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency",
           f"--timeout", f"{timeout_s}s", f"http://127.0.0.1:{port}{path}"]
    if PINNING and cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 30,
                           start_new_session=True)
        out = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    return parse_wrk(out), out


# ---------------------------------------------------------------- output

def fmt(x, digits=0, dash="—"):
    if x is None:
        return dash
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def markdown_table(headers, rows, left=(0,)):
    """Columns whose index is in `left` are left-aligned, the others (numbers) right-aligned."""
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i in left else "---:" for i in range(len(headers))) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def gnuplot(script, what):
    exe = shutil.which("gnuplot")
    if not exe:
        log(f"gnuplot not installed (deploy/install-deps.sh --bench): no {what} chart")
        return False
    try:
        r = subprocess.run([exe], input=script, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        log("gnuplot timed out")
        return False
    if r.returncode != 0:
        log(f"gnuplot failed: {r.stderr.strip()[:400]}")
        return False
    return True


def write_results(name, st, md, data, header_lines):
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, f"{name}-{st}")
    with open(base + ".md", "w") as f:
        f.write("\n".join(header_lines) + "\n\n" + md + "\n")
    with open(base + ".json", "w") as f:
        json.dump(data, f, indent=2)
    return base


def ensure_tools(tools):
    """Names of the tools in `tools` that are missing."""
    return [t for t in tools if not shutil.which(t)]


def measure_rounds(procs, runs, rounds):
    """Runs rounds() (which appends its measurements to runs), then stops every process. Over
    the time budget it stops early and keeps what was measured. False: set-up failed before
    anything was measured (the caller exits 2)."""
    try:
        rounds()
    except BudgetExceeded as e:
        log(f"stopping early: {e}; reporting what was measured")
    except RuntimeError as e:
        log(f"setup failed: {e}")
        if not runs:
            return False
    finally:
        procs.cleanup()
        signal.alarm(0)
    return True


def report_header(name, info, binary, clients, details):
    """The first lines of every report: what and when, the machine and CPU placement (the proxy
    on CPU 1, `clients` on CPU 0), the load around the run, the binary, then `details`."""
    return [
        f"# {name} — {info['date']}",
        "",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, Linux {info['kernel']}; pinning: "
        + (f"proxy on CPU 1, {clients} on CPU 0" if info["pinning"] else "none"),
        f"Load average (1/5/15 min) at start: {info['load_start']}, at end: "
        f"{info.get('load_end') or loadavg()} (the machine is shared; medians of alternated "
        "rounds absorb some of it)",
        f"loopguard: {describe_binary(binary)}",
        *details,
    ]


def publish(name, header, md, data, draw):
    """Writes <name>-<stamp>.md/.json, lets draw(base) add the chart, prints the report."""
    base = write_results(name, stamp(), md, data, header)
    draw(base)
    print("\n".join(header) + "\n\n" + md + "\n")
    print(f"results: {base}.md / .json" + (" / .png" if os.path.exists(base + ".png") else ""))
