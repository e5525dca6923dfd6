"""Helpers for the offload pool tests (test_offload_*.py): config text for a pool of
workers/test_worker.py processes, reading what the workers recorded, loopguard's worker log
lines, process-group checks, and a Sidecar process (`loopguard offload`)."""
import json
import os
import re
import signal
import subprocess
import threading

import harness
from harness import PYTHON, HarnessError, http_request, pid_alive, to_yaml, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "workers", "test_worker.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pool_def(worker_args=(), workers=2, concurrency=1, port=False, stats_dir=None, env=None,
             **extra):
    """A `pools:` entry running test_worker.py; extra keys (request_timeout="1s", ...) as given."""
    cmd = [PYTHON, WORKER, *(["--port", "{port}"] if port else ["--uds", "{socket}"]),
           *worker_args]
    pool = {"command": cmd, "workers": workers, "concurrency_per_worker": concurrency,
            "ready": {"path": "/ready", "timeout": "10s"},
            "restart_backoff": {"initial": "100ms", "max": "1s"}}
    envs = dict(env or {})
    envs.setdefault("PYTHONUNBUFFERED", "1")
    if stats_dir:
        envs["TEST_WORKER_STATS_DIR"] = stats_dir
    pool["env"] = envs
    pool.update(extra)
    return pool


def pool_route(name="cpu", prefix="/", pool="cpu", **limits):
    limits = {"max_queue": 200, "queue_timeout": "20s", **limits}
    return {"name": name, "match": {"prefix": prefix}, "pool": pool, "limits": limits}


def config_text(pools, routes, upstreams=None, listen="127.0.0.1:0", **top):
    cfg = {"listen": listen}
    cfg.update(top)
    if upstreams:
        cfg["upstreams"] = upstreams
    cfg["pools"] = pools
    cfg["routes"] = routes
    return to_yaml(cfg) + "\n"


# ---- what loopguard logs about workers -------------------------------------------------------
READY_RE = re.compile(r"pool (\S+): worker (\d+) \(pid (\d+)\) ready in")
START_RE = re.compile(r"pool (\S+): worker (\d+) starting \(pid (\d+)\)")


def lines_matching(proxy, pattern):
    rx = re.compile(pattern)
    with proxy._cond:
        return [line for line in proxy.stderr_lines if rx.search(line)]


def ready_pids(proxy, pool="cpu"):
    """Pids of every worker of `pool` that loopguard reported ready, in order."""
    out = []
    for line in lines_matching(proxy, READY_RE.pattern):
        m = READY_RE.search(line)
        if m.group(1) == pool:
            out.append(int(m.group(3)))
    return out


def started_pids(proxy, pool="cpu"):
    out = []
    for line in lines_matching(proxy, START_RE.pattern):
        m = START_RE.search(line)
        if m.group(1) == pool:
            out.append(int(m.group(3)))
    return out


def wait_ready(proxy, count, pool="cpu", timeout=10):
    """Waits until `count` workers of `pool` were reported ready (in total); returns their pids."""
    return wait_until(lambda: len(ready_pids(proxy, pool)) >= count and ready_pids(proxy, pool),
                      timeout, interval=0.02, desc=f"{count} ready workers of pool {pool}")


# ---- what the workers record ---------------------------------------------------------------------
def worker_peaks(stats_dir):
    """{pid: peak concurrent requests} of every worker process that served a request."""
    peaks = {}
    for name in os.listdir(stats_dir):
        if name.endswith(".json"):
            with open(os.path.join(stats_dir, name)) as f:
                data = json.load(f)
            peaks[data["pid"]] = data["peak"]
    return peaks


# ---- processes -----------------------------------------------------------------------------------
def cpu_seconds(pid):
    """User + system CPU time of pid so far, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rfind(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def group_members(pgid):
    """Live (non-zombie) processes whose process group is pgid."""
    members = []
    for pid, fields in harness.proc_stats():
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(pid)
    return members


def assert_gone(pids, timeout=5, what="worker"):
    """Every pid, and every process in a group led by one of them, is gone within timeout."""
    try:
        wait_until(lambda: not any(pid_alive(p) or group_members(p) for p in pids), timeout,
                   interval=0.05, desc=f"{what} processes {pids} to be gone")
    except HarnessError:
        alive = [p for p in pids if pid_alive(p) or group_members(p)]
        for p in alive:  # do not leak them into the next test
            try:
                os.killpg(p, signal.SIGKILL)
            except OSError:
                pass
        raise HarnessError(f"{what} processes outlived loopguard: {alive}") from None


def get(proxy, path, timeout=15, **kw):
    return http_request(proxy.target, "GET", path, timeout=timeout, **kw)


def get_all(proxy, paths, timeout=30):
    """Sends every path at once (one thread and connection each); returns responses in order
    (an exception object in place of a response that failed)."""
    results = [None] * len(paths)

    def one(i, path):
        try:
            results[i] = get(proxy, path, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            results[i] = e

    threads = [threading.Thread(target=one, args=(i, p), daemon=True) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return results


class Sidecar(harness.Proxy):
    """`loopguard offload --config FILE` (same log and stop handling as harness.Proxy)."""

    def start(self, wait=True, timeout=harness.START_TIMEOUT):
        self.write_config()
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        cmd = [harness.loopguard_bin(), "offload", "--config", self.config_path, *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.workdir,
                                     start_new_session=True)
        harness._LineReader(self.proc.stderr, self.stderr_lines, self._cond).start()
        harness._LineReader(self.proc.stdout, self.stdout_lines, self._cond).start()
        if wait:
            self.wait_listening(timeout)
        return self


def start_sidecar(procs, config):
    s = Sidecar(procs.workdir, config, name=f"sidecar{len(procs.proxies)}")
    procs.proxies.append(s)
    return s.start()


def is_http_error_from_proxy(resp, status):
    """True if resp is a loopguard-made error with this status."""
    if not isinstance(resp, harness.Response) or resp.status != status:
        return False
    try:
        body = resp.json()
    except HarnessError:
        return False
    return "error" in body and "request_id" in body
