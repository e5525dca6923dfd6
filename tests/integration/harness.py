"""Shared helpers for loopguard's integration tests.

Processes: Upstream (tests/integration/fake_upstream.py in its own process) and Proxy (the real
binary from $LOOPGUARD_BIN), both owned by a ProcessRegistry that conftest.py ties to a test or a
module, so teardown always kills what is left and failures print the processes' logs.

Clients: RawConn (a raw socket with a buffered HTTP/1.x response reader, for malformed input,
pipelining and timing) and http_request() (http.client, for ordinary requests).

Every wait has a deadline. Nothing here sleeps for a fixed time to await an event: wait_until()
polls a condition until its deadline instead.
"""
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_UPSTREAM = os.path.join(HERE, "fake_upstream.py")
sys.path.insert(0, HERE)
# Re-exported for the tests: the body pattern the fake upstream serves.
from fake_upstream import PATTERN_PERIOD, pattern_bytes, pattern_view  # noqa: E402,F401

# The tests and the fake upstream run on Debian's interpreter, never a pyenv one from PATH.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

START_TIMEOUT = 10.0  # seconds for a process to say it is listening
STOP_TIMEOUT = 15.0


class HarnessError(AssertionError):
    pass


# ---- waiting ------------------------------------------------------------------------------------------
def wait_until(predicate, timeout, interval=0.01, desc="condition"):
    """Polls predicate() until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout}s waiting for {desc} (last: {last!r})")
        time.sleep(interval)


# ---- processes ----------------------------------------------------------------------------------------
def loopguard_bin():
    path = os.environ.get("LOOPGUARD_BIN")
    if not path:
        pytest.skip("LOOPGUARD_BIN is not set: point it at the built loopguard binary "
                    "(ctest sets it; by hand: LOOPGUARD_BIN=build/loopguard)")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"LOOPGUARD_BIN={path!r} is not an executable file", pytrace=False)
    return path


def run_cli(args, timeout=10, cwd=None):
    """Runs `loopguard ARGS...` to completion; returns the CompletedProcess (text mode)."""
    return subprocess.run([loopguard_bin(), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


def proc_stats():
    """(pid, fields) for every process on the machine: fields are /proc/PID/stat after the
    command name, so fields[0] is the state, [1] the ppid, [2] the process group."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        yield int(entry), stat[stat.rfind(b")") + 2 :].split()


def proc_children():
    """{ppid: [pid, ...]} for every process on the machine."""
    children = {}
    for pid, fields in proc_stats():
        children.setdefault(int(fields[1]), []).append(pid)
    return children


def descendants(pid):
    """Every live descendant of pid (children, grandchildren, ...)."""
    tree = proc_children()
    out, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def rss_bytes(pid):
    """VmRSS of pid in bytes (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def maps_library(pid, name):
    """True if a shared object whose path contains name is mapped in pid (e.g. "libasan")."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return any(name in line for line in f)
    except OSError:
        return False


class _LineReader(threading.Thread):
    """Drains a pipe into a list of lines (so the child never blocks on a full pipe) and wakes
    waiters on every line."""

    def __init__(self, stream, lines, cond, echo_prefix=None):
        super().__init__(daemon=True)
        self.stream, self.lines, self.cond = stream, lines, cond

    def run(self):
        for raw in iter(self.stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()


def file_tail(path, lines=40):
    """The last `lines` lines of a log file ("" if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


def short_tmpdir(prefix="lgit-"):
    """A short directory under /tmp (unix socket paths must stay under 108 bytes)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


class Upstream:
    """fake_upstream.py in its own process. .port (TCP) or .unix_path; .address is the spelling
    for a loopguard config ("127.0.0.1:PORT" or "unix:/path")."""

    def __init__(self, workdir, name="upstream", unix_path=None, keepalive_timeout_ms=0,
                 extra_args=()):
        self.workdir = workdir
        self.name = name
        self.unix_path = unix_path
        self.port = None
        self.keepalive_timeout_ms = keepalive_timeout_ms
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(workdir, f"upstream-{name}-{id(self):x}.log")

    def start(self, timeout=START_TIMEOUT):
        cmd = [PYTHON, FAKE_UPSTREAM, "--name", self.name,
               "--keepalive-timeout", str(self.keepalive_timeout_ms)]
        cmd += ["--unix", self.unix_path] if self.unix_path else ["--port", "0"]
        cmd += self.extra_args
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.proc.stdout], [], [], max(0, left))
            if not r:
                self.kill()
                raise HarnessError(f"fake upstream {self.name} did not start in {timeout}s:\n"
                                   + self.log_text())
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise HarnessError(f"fake upstream {self.name} exited early:\n" + self.log_text())
            line += chunk
        info = json.loads(line.decode())
        self.port = info["port"]
        self.pid = info["pid"]
        return self

    @property
    def address(self):
        return f"unix:{self.unix_path}" if self.unix_path else f"127.0.0.1:{self.port}"

    @property
    def target(self):
        return ("unix", self.unix_path) if self.unix_path else self.port

    def control(self, path, timeout=5):
        resp = http_request(self.target, "GET", path, timeout=timeout,
                            headers={"Connection": "close"})
        if resp.status != 200:
            raise HarnessError(f"fake upstream {self.name} {path}: {resp.status} {resp.body!r}")
        return resp.json()

    def stats(self):
        return self.control("/__stats")

    def reset_stats(self):
        return self.control("/__reset_stats")

    def configure(self, **params):
        """/__config: keepalive_ms=N (close idle keep-alive connections), drop_next=N."""
        q = "&".join(f"{k}={v}" for k, v in params.items())
        return self.control("/__config?" + q)

    def wait_stats(self, predicate, timeout=5, desc="upstream stats condition"):
        """Polls stats() until predicate(stats) holds; returns those stats."""
        box = {}

        def check():
            box["s"] = self.stats()
            return predicate(box["s"])

        try:
            wait_until(check, timeout, interval=0.01, desc=desc)
        except HarnessError as e:
            raise HarnessError(f"{e}\nlast stats of {self.name}: {box.get('s')}") from None
        return box["s"]

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-8000:]
        except OSError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=5):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_files()

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._close_files()

    def _close_files(self):
        for f in (getattr(self, "_log", None), self.proc.stdout if self.proc else None):
            try:
                if f:
                    f.close()
            except OSError:
                pass


LISTEN_RE = re.compile(
    r"(admin )?listening on (unix:[^\s\"',}\]]+|\[[0-9A-Fa-f:.]+\]:\d{1,5}(?!\d)|"
    r"[0-9A-Za-z.\-]+:\d{1,5}(?!\d))")


class Proxy:
    """The loopguard binary running `proxy --config FILE` on a config text.

    .port / .unix_path: the main listener (from the "listening on ..." stderr line);
    .admin_port: the admin listener, when the config has one;
    .stderr_lines / .stdout_lines: everything it printed so far (stdout = access log)."""

    def __init__(self, workdir, config_text, args=(), env=None, name="proxy"):
        self.workdir = workdir
        self.config_text = config_text
        self.args = list(args)
        self.env = env
        self.name = name
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        self.proc = None
        self.port = None
        self.unix_path = None
        self.admin_port = None
        self.stderr_lines = []
        self.stdout_lines = []
        self._cond = threading.Condition()
        self.returncode = None
        self.exited_at = None

    @property
    def pid(self):
        return self.proc.pid

    @property
    def target(self):
        return ("unix", self.unix_path) if self.unix_path else self.port

    def write_config(self, text=None):
        if text is not None:
            self.config_text = text
        with open(self.config_path, "w") as f:
            f.write(self.config_text)

    def start(self, wait=True, timeout=START_TIMEOUT):
        self.write_config()
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        cmd = [loopguard_bin(), "proxy", "--config", self.config_path, *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.workdir,
                                     start_new_session=True)
        _LineReader(self.proc.stderr, self.stderr_lines, self._cond).start()
        _LineReader(self.proc.stdout, self.stdout_lines, self._cond).start()
        if wait:
            self.wait_listening(timeout)
        return self

    def _expects_admin(self):
        return re.search(r"^admin:\s*\n\s+listen:", self.config_text, re.M) is not None or \
            re.search(r"^admin:\s*\{\s*listen:", self.config_text, re.M) is not None

    def wait_listening(self, timeout=START_TIMEOUT):
        want_admin = self._expects_admin()

        def found():
            main = admin = None
            for line in self.stderr_lines:
                for m in LISTEN_RE.finditer(line):
                    if m.group(1):
                        admin = m.group(2)
                    else:
                        main = m.group(2)
            return main, admin

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                main, admin = found()
                if main and (admin or not want_admin):
                    break
                if self.proc.poll() is not None:
                    raise HarnessError(f"loopguard exited with {self.proc.returncode} before "
                                       f"listening:\n{self.log_text()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(f"loopguard did not log 'listening on' within {timeout}s "
                                       f"(admin expected: {want_admin}):\n{self.log_text()}")
                self._cond.wait(min(left, 0.1))
        if main.startswith("unix:"):
            self.unix_path = main[len("unix:") :]
        else:
            self.port = int(main.rsplit(":", 1)[1])
        if admin:
            self.admin_port = int(admin.rsplit(":", 1)[1])
        return self

    def wait_for_line(self, pattern, stream="stderr", timeout=5, start=0):
        """Waits for a line matching the regex pattern (from index start on); returns it."""
        lines = self.stderr_lines if stream == "stderr" else self.stdout_lines
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in lines[start:]:
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(f"no {stream} line matching {pattern!r} within {timeout}s:\n"
                                       + self.log_text())
                self._cond.wait(min(left, 0.1))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Waits for the process to exit; returns its exit code (HarnessError on timeout)."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"loopguard (pid {self.pid}) still running after {timeout}s:\n"
                               + self.log_text()) from None
        if self.exited_at is None:
            self.exited_at = time.monotonic()
        return self.returncode

    def stop(self, timeout=STOP_TIMEOUT, expect_code=0, sig=signal.SIGTERM):
        """Graceful stop: sends sig, waits up to timeout, checks the exit code (unless expect_code
        is None) and that no descendant process outlived it. Returns the exit code."""
        if self.proc.poll() is None:
            kids = descendants(self.pid)
            self.proc.send_signal(sig)
        else:
            kids = []
        try:
            rc = self.wait_exit(timeout)
        except HarnessError:
            self.kill()
            raise
        if expect_code is not None and rc != expect_code:
            raise HarnessError(f"loopguard exited with {rc}, expected {expect_code}:\n"
                               + self.log_text())
        try:
            wait_until(lambda: not any(pid_alive(k) for k in kids), 5,
                       desc=f"children {kids} of loopguard to exit")
        except HarnessError:
            raise HarnessError(f"loopguard left child processes behind: "
                               f"{[k for k in kids if pid_alive(k)]}\n" + self.log_text()) from None
        return rc

    def kill(self):
        if self.proc is None:
            return
        kids = descendants(self.proc.pid) if self.proc.poll() is None else []
        for pid in [self.proc.pid, *kids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def rss(self):
        return rss_bytes(self.pid)

    def log_text(self, tail=80):
        with self._cond:
            err = self.stderr_lines[-tail:]
            out = self.stdout_lines[-tail:]
        return ("--- loopguard stderr (last %d lines) ---\n%s\n--- loopguard stdout (last %d lines) "
                "---\n%s" % (len(err), "\n".join(err), len(out), "\n".join(out)))


class ProcessRegistry:
    """Owns every process a test (or module) starts; cleanup() kills whatever is left."""

    active = []  # registries alive right now (conftest prints their logs when a test fails)

    def __init__(self, label):
        self.label = label
        self.workdir = short_tmpdir()
        self.upstreams = []
        self.proxies = []
        self.closers = []
        ProcessRegistry.active.append(self)

    def upstream(self, name=None, unix=False, keepalive_timeout_ms=0, extra_args=()):
        """Starts a fake upstream. unix=True puts it on a unix socket in a short temp dir."""
        name = name or f"up{len(self.upstreams)}"
        path = os.path.join(self.workdir, f"{name}.sock") if unix else None
        up = Upstream(self.workdir, name=name, unix_path=path,
                      keepalive_timeout_ms=keepalive_timeout_ms, extra_args=extra_args)
        self.upstreams.append(up)
        return up.start()

    def proxy(self, config_text, args=(), env=None, wait=True):
        """Writes config_text to a file and starts loopguard on it (waits for 'listening on')."""
        p = Proxy(self.workdir, config_text, args=args, env=env, name=f"proxy{len(self.proxies)}")
        self.proxies.append(p)
        return p.start(wait=wait)

    def on_cleanup(self, fn):
        self.closers.append(fn)

    def path(self, name):
        return os.path.join(self.workdir, name)

    def dump_logs(self):
        parts = []
        for p in self.proxies:
            parts.append(f"=== {p.name} (pid {p.proc.pid if p.proc else '-'}) config:\n"
                         f"{p.config_text}\n{p.log_text()}")
        for u in self.upstreams:
            text = u.log_text()
            if text.strip():
                parts.append(f"=== fake upstream {u.name} stderr:\n{text}")
        return "\n".join(parts)

    def cleanup(self):
        for fn in reversed(self.closers):
            try:
                fn()
            except Exception:
                pass
        for p in self.proxies:
            if p.running():
                p.kill()
        for u in self.upstreams:
            u.stop()
        if self in ProcessRegistry.active:
            ProcessRegistry.active.remove(self)
        shutil.rmtree(self.workdir, ignore_errors=True)


# ---- ports that refuse or never answer -----------------------------------------------------------------
class DeadPort:
    """A TCP port with nothing listening: a bound, never-listening socket holds it, so connects
    are refused (RST) and no other process can take it meanwhile."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def close(self):
        self.sock.close()


class Blackhole:
    """A TCP port whose SYNs are silently dropped, so connects hang until the client's own
    timeout: a listener with backlog 0 whose single accept-queue slot is taken by a connection
    we never accept (Linux drops SYNs to a listener with a full accept queue)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.fillers = []
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(s)

    def works(self, timeout=0.3):
        """True if a fresh connect really hangs (the precondition of a connect-timeout test)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(("127.0.0.1", self.port))
            return False
        except socket.timeout:
            return True
        except OSError:
            return False
        finally:
            s.close()

    def close(self):
        for s in self.fillers:
            s.close()
        self.sock.close()


# ---- clients ---------------------------------------------------------------------------------------------
def connect(target, timeout=5):
    """A connected socket to a port number on 127.0.0.1, or to ("unix", path)."""
    if isinstance(target, tuple) and target[0] == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(target[1])
        return s
    s = socket.create_connection(("127.0.0.1", target), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Response:
    def __init__(self, status, reason, version, headers, body, trailers=(), close_delimited=False):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = list(headers)  # [(name, value)] in received order
        self.body = body
        self.trailers = list(trailers)
        self.close_delimited = close_delimited
        self.elapsed = None  # set by some helpers: seconds from send to complete response

    def header(self, name):
        """The single value of header name (None if absent; AssertionError if repeated)."""
        vals = self.header_all(name)
        assert len(vals) <= 1, f"header {name} repeated: {vals}"
        return vals[0] if vals else None

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise HarnessError(f"response body is not JSON: {self.body[:500]!r}") from None

    def __repr__(self):
        return (f"<Response {self.status} {self.reason!r} headers={self.headers} "
                f"body={self.body[:300]!r}{'...' if len(self.body) > 300 else ''}>")


class ConnectionClosed(HarnessError):
    pass


class RawConn:
    """A raw client connection with a read buffer, so pipelined responses and bytes after a
    response are never lost. All reads take a timeout (seconds) and raise on expiry."""

    def __init__(self, target, timeout=5):
        self.sock = connect(target, timeout)
        self.buf = bytearray()
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """sendall that reports (instead of raising) a connection the peer already closed."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("read deadline passed")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1024 * 1024)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[: i + len(marker)])
                del self.buf[: i + len(marker)]
                return out
            if self.eof or not self._fill(deadline):
                raise ConnectionClosed(f"connection closed before {marker!r}; got {bytes(self.buf)!r}")

    def read_exact(self, n, timeout=5):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if self.eof or not self._fill(deadline):
                raise ConnectionClosed(f"connection closed after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_available(self, timeout=0.0):
        """Whatever is buffered or arrives within timeout (b"" if nothing)."""
        if not self.buf and not self.eof:
            try:
                self._fill(time.monotonic() + max(timeout, 0.001))
            except socket.timeout:
                pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_until_close(self, timeout=5):
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._fill(deadline):
                break
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def wait_closed(self, timeout=5):
        """Asserts the peer closes (FIN or RST) within timeout; returns bytes that came first."""
        try:
            return self.read_until_close(timeout)
        except socket.timeout:
            raise HarnessError(f"connection still open after {timeout}s "
                               f"(buffered: {bytes(self.buf)[:200]!r})") from None

    def read_head(self, timeout=5):
        """Reads one response head; returns (version, status, reason, headers)."""
        raw = self.read_until(b"\r\n\r\n", timeout)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise HarnessError(f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    def read_response(self, timeout=10, method="GET", head_only=False):
        """Reads one full response. 1xx responses are returned as they are (call again for the
        final one). Body framing: none for HEAD/1xx/204/304, else chunked, Content-Length, or
        until close."""
        deadline = time.monotonic() + timeout
        version, status, reason, headers = self.read_head(timeout)
        resp = Response(status, reason, version, headers, b"")
        if head_only or method == "HEAD" or status < 200 or status in (204, 304):
            return resp
        te = ",".join(resp.header_all("transfer-encoding")).lower()
        cl = resp.header_all("content-length")
        left = lambda: max(0.0, deadline - time.monotonic())  # noqa: E731
        if "chunked" in te:
            body = bytearray()
            while True:
                line = self.read_until(b"\r\n", left())
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                body += self.read_exact(size, left())
                if self.read_exact(2, left()) != b"\r\n":
                    raise HarnessError("chunk not followed by CRLF")
            while True:
                line = self.read_until(b"\r\n", left())
                if line == b"\r\n":
                    break
                name, _, value = line.decode("latin-1").partition(":")
                resp.trailers.append((name, value.strip()))
            resp.body = bytes(body)
        elif cl:
            resp.body = self.read_exact(int(cl[0]), left())
        else:
            resp.body = self.read_until_close(left())
            resp.close_delimited = True
        return resp

    def request(self, method, path, headers=None, body=b"", host="test.local", timeout=10,
                version="HTTP/1.1"):
        """Sends one well-formed request and reads its response."""
        self.send(build_request(method, path, headers, body, host, version))
        return self.read_response(timeout, method=method)

    def hang_up(self):
        """Closes like a client that gives up: FIN now, even if another thread is reading."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def build_request(method, path, headers=None, body=b"", host="test.local", version="HTTP/1.1"):
    """Bytes of a request with Host (unless host is None) and Content-Length when body is given
    (unless headers already frame it)."""
    hs = []
    if host is not None:
        hs.append(("Host", host))
    given = list(headers.items() if isinstance(headers, dict) else (headers or []))
    names = {n.lower() for n, _ in given}
    hs += given
    if body and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    head = f"{method} {path} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in hs) + "\r\n"
    return head.encode("latin-1") + body


def chunked_body(pieces, trailers=()):
    """Encodes pieces (bytes) as a chunked body."""
    out = bytearray()
    for p in pieces:
        if p:
            out += b"%x\r\n%s\r\n" % (len(p), p)
    out += b"0\r\n"
    for n, v in trailers:
        out += f"{n}: {v}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def http_connection(target, timeout=10):
    """An http.client connection to a port on 127.0.0.1 or to ("unix", path)."""
    if isinstance(target, tuple) and target[0] == "unix":
        return _UnixHTTPConnection(target[1], timeout)
    return http.client.HTTPConnection("127.0.0.1", target, timeout=timeout)


def http_request(target, method, path, body=None, headers=None, timeout=10, conn=None):
    """One request with http.client; returns a Response (elapsed set). Uses conn if given (kept
    open for reuse), else a fresh connection that is closed afterwards."""
    own = conn is None
    conn = conn or http_connection(target, timeout)
    t0 = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        resp = Response(r.status, r.reason, f"HTTP/{r.version / 10:.1f}", r.getheaders(), data)
        resp.elapsed = time.monotonic() - t0
        return resp
    finally:
        if own:
            conn.close()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def echo_header(echo, name):
    """Values of header name as the fake upstream received it (from an /echo body)."""
    return [v for n, v in echo["headers"] if n.lower() == name.lower()]


def assert_proxy_error(resp, status, route=None, require_request_id=True):
    """A response the proxy generated itself: the status, a JSON body with error/route/request_id,
    and (when the proxy returns one) X-Request-Id equal to the body's request_id.
    require_request_id=False accepts an empty request_id (a request rejected while its head was
    still being parsed, before it had an id)."""
    assert resp.status == status, resp
    ctype = resp.header("content-type") or ""
    assert ctype.startswith("application/json"), resp
    body = resp.json()
    for key in ("error", "route", "request_id"):
        assert key in body, f"{key!r} missing from proxy error body {body}"
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["request_id"], str), body
    if require_request_id:
        assert body["request_id"], f"empty request_id in {body}"
    if route is not None:
        assert body["route"] == route, body
    rid = resp.header("x-request-id")
    if rid is not None:
        assert rid == body["request_id"], (rid, body)
    assert "x-upstream" not in {n.lower() for n, _ in resp.headers}, \
        f"expected a proxy-generated response, got the upstream's: {resp}"
    return body


def assert_overload(resp, status, reason):
    """A limit refusal: status, X-Loopguard-Overload: reason, a Retry-After, JSON error body."""
    assert resp.status == status, resp
    assert resp.header("x-loopguard-overload") == reason, resp
    retry_after = resp.header("retry-after")
    assert retry_after is not None and re.fullmatch(r"\d+", retry_after), resp
    return assert_proxy_error(resp, status)


def metric(proxy, name, **labels):
    """One sample from the proxy's admin /metrics: the value of `name` whose labels include
    `labels` (None when there is none). The proxy needs admin.listen."""
    text = http_request(proxy.admin_port, "GET", "/metrics", timeout=5).body.decode()
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        base, _, rest = series.partition("{")
        if base != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            return float(value)
    return None


def wait_metric(proxy, name, value, timeout=5, **labels):
    """Waits until the admin /metrics sample `name` (with `labels`) equals `value`: how a test
    knows that a request it sent has reached the proxy's queue, or its slot. The proxy needs
    admin.listen."""
    return wait_until(lambda: metric(proxy, name, **labels) == value, timeout, interval=0.02,
                      desc=f"{name}{labels} == {value}")


def wait_route(proxy, route, in_flight=None, queued=None, timeout=5):
    """Waits until `route` has `in_flight` requests holding a slot and/or `queued` waiting."""
    if in_flight is not None:
        wait_metric(proxy, "loopguard_route_in_flight", in_flight, timeout, route=route)
    if queued is not None:
        wait_metric(proxy, "loopguard_route_queue_depth", queued, timeout, route=route)


# ---- config text -------------------------------------------------------------------------------------------
def to_yaml(obj, indent=0):
    """Block YAML for dicts/lists of str/int/bool/None; scalar lists in flow style."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        lines = []
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v and not _flow_list(v):
                lines.append(f"{pad}{k}:\n{to_yaml(v, indent + 1)}")
            else:
                lines.append(f"{pad}{k}: {_scalar_or_flow(v)}")
        return "\n".join(lines)
    if isinstance(obj, list):
        lines = []
        for item in obj:
            if isinstance(item, dict) and item:
                inner = to_yaml(item, indent + 1).split("\n")
                first = inner[0][len("  " * (indent + 1)) :]
                lines.append(f"{pad}- {first}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {_scalar_or_flow(item)}")
        return "\n".join(lines)
    return pad + _scalar_or_flow(obj)


def _flow_list(v):
    return isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)


def _scalar_or_flow(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar_or_flow(x) for x in v) + "]"
    if isinstance(v, dict) and not v:
        return "{}"
    raise TypeError(f"cannot render {v!r}")


def proxy_config(upstreams, routes, listen="127.0.0.1:0", **top):
    """Config text: upstreams {name: {endpoints: [...], ...}}, routes [{name, match, ...}], plus
    any other top-level sections (limits=..., timeouts=..., admin=..., log=..., pools=...)."""
    cfg = {"listen": listen}
    cfg.update(top)
    if upstreams:
        cfg["upstreams"] = upstreams
    cfg["routes"] = routes
    return to_yaml(cfg) + "\n"


def simple_config(upstream, **top):
    """One upstream "app" and one catch-all route "default" to it."""
    return proxy_config(
        {"app": {"endpoints": [upstream.address]}},
        [{"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        **top)


# ---- threads -------------------------------------------------------------------------------------------------
class Background(threading.Thread):
    """Runs fn(*args) in a thread; .result() re-raises its exception or returns its value."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.value = self.error = None
        self.finished_at = None
        self.start()

    def run(self):
        try:
            self.value = self.fn(*self.args, **self.kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in result()
            self.error = e
        finally:
            self.finished_at = time.monotonic()

    def result(self, timeout=30):
        self.join(timeout)
        if self.is_alive():
            raise HarnessError(f"background {self.fn.__name__} still running after {timeout}s")
        if self.error:
            raise self.error
        return self.value


class Pending:
    """A request sent now on a connection of its own, its response read by a background thread
    (read=False: nobody reads, e.g. to hang up while it is queued). result() returns the Response
    with .elapsed = seconds from the send to the complete response."""

    def __init__(self, target, path, method="GET", headers=None, body=b"", read=True, timeout=20):
        self.conn = RawConn(target)
        self.path = path
        self.method = method
        self.timeout = timeout
        self.job = None
        self.t_send = time.monotonic()
        self.conn.send(build_request(method, path, headers, body))
        if read:
            self.read_in_background()

    def read_in_background(self):
        self.job = Background(self._read)
        return self

    def _read(self):
        r = self.conn.read_response(timeout=self.timeout, method=self.method)
        r.elapsed = time.monotonic() - self.t_send
        return r

    def result(self, timeout=None):
        try:
            return self.job.result(timeout or self.timeout + 5)
        finally:
            self.conn.close()

    def hang_up(self):
        self.conn.hang_up()
