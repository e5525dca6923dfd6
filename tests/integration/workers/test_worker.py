#!/usr/bin/python3
"""A worker process for loopguard's offload tests (stdlib only): an HTTP/1.1 keep-alive server
on a unix socket (--uds PATH) or a loopback port (--port N) whose behaviour is chosen per
request, and per process by flags.

Per request (by the last path segment, so /cpu/work acts as /work; times in milliseconds):
  GET /ready            readiness probe (200, or 503 with --never-ready); not counted
  GET /__stats          {"pid", "index", "peak", "current", "served"}; not counted
  GET /work?ms=N        burn CPU for N ms, then answer {"pid", "index", "peak", ...}
  GET /sleep?ms=N       answer after N ms without using CPU
  GET /crash?ms=N       os._exit(3) after N ms, mid-request (no response)
  GET /hang             never answer
  GET /alloc?mb=N       allocate N MiB and keep it (for max_rss)
  POST /echo            {"length", "sha256"} of the body
  GET /env              {"index_env", "argv", "cwd", "pid", "custom"}
  GET /big?mb=N&ms=M    after M ms, N MiB of zeros (Content-Length), whatever the reader's pace
Every counted request records the process's PEAK number of concurrent requests. With
$TEST_WORKER_STATS_DIR set, the peak is also written to $TEST_WORKER_STATS_DIR/<pid>.json, so a
test can check every worker process, including those already killed or recycled.

Per process: --boot-delay S (sleep before listening), --boot-exit CODE (print to stderr and
exit at once), --fail-boot-if-exists FILE (exit at once while FILE exists), --never-ready
(/ready answers 503), --ignore-sigterm, --boot-chatter N (N numbered lines on stdout and on
stderr at boot).
"""
import argparse
import hashlib
import http.server
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

INDEX = os.environ.get("LOOPGUARD_WORKER_INDEX", "?")
STATS_DIR = os.environ.get("TEST_WORKER_STATS_DIR")

lock = threading.Lock()
state = {"peak": 0, "current": 0, "served": 0}
kept = []  # memory held by /alloc


def write_stats():
    if not STATS_DIR:
        return
    path = os.path.join(STATS_DIR, f"{os.getpid()}.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"pid": os.getpid(), "index": INDEX, "peak": state["peak"]}, f)
    os.replace(tmp, path)


def enter():
    with lock:
        state["current"] += 1
        if state["current"] > state["peak"]:
            state["peak"] = state["current"]
            write_stats()


def leave():
    with lock:
        state["current"] -= 1
        state["served"] += 1


def burn(ms):
    end = time.monotonic() + ms / 1000.0
    x = 0
    while time.monotonic() < end:
        for i in range(2000):
            x += i * i
    return x


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-worker"

    def log_message(self, fmt, *args):  # quiet: the tests read loopguard's log, not ours
        pass

    def address_string(self):
        return "-"

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def info(self):
        with lock:
            return {"pid": os.getpid(), "index": INDEX, "peak": state["peak"],
                    "current": state["current"], "served": state["served"]}

    def do_GET(self):
        self.handle_request(b"")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.handle_request(self.rfile.read(n) if n else b"")

    def handle_request(self, body):
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        ms = int(q.get("ms", "0"))
        path = "/" + url.path.rstrip("/").rsplit("/", 1)[-1]  # /api/work acts as /work
        if path == "/ready":
            if ARGS.never_ready:
                return self.reply(503, {"ready": False})
            return self.reply(200, {"ready": True})
        if path == "/__stats":
            return self.reply(200, self.info())
        enter()
        try:
            if path == "/work":
                burn(ms)
            elif path == "/sleep":
                time.sleep(ms / 1000.0)
            elif path == "/crash":
                time.sleep(ms / 1000.0)
                sys.stderr.write(f"worker {INDEX} crashing on purpose\n")
                sys.stderr.flush()
                os._exit(3)
            elif path == "/hang":
                while True:
                    time.sleep(3600)
            elif path == "/alloc":
                kept.append(bytearray(int(q.get("mb", "1")) * 1024 * 1024))
                for block in kept:  # touch every page so it counts in RSS
                    for i in range(0, len(block), 4096):
                        block[i] = 1
            elif path == "/echo":
                out = self.info()
                out.update({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})
                return self.reply(200, out)
            elif path == "/big":
                time.sleep(ms / 1000.0)
                n = int(q.get("mb", "1")) * 1024 * 1024
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(n))
                self.end_headers()
                chunk = bytes(256 * 1024)
                try:
                    for _ in range(n // len(chunk)):
                        self.wfile.write(chunk)
                except OSError:
                    pass  # the proxy gave up on it
                return
            elif path == "/env":
                out = self.info()
                out.update({"index_env": os.environ.get("LOOPGUARD_WORKER_INDEX"),
                            "argv": sys.argv, "cwd": os.getcwd(),
                            "custom": os.environ.get("TEST_CUSTOM")})
                return self.reply(200, out)
            else:
                return self.reply(404, {"error": "no such path", "path": path})
            self.reply(200, self.info())
        finally:
            leave()


class ThreadingUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128


class ThreadingTCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--uds")
    p.add_argument("--port", type=int)
    p.add_argument("--boot-delay", type=float, default=0.0)
    p.add_argument("--boot-exit", type=int)
    p.add_argument("--fail-boot-if-exists", metavar="FILE")
    p.add_argument("--never-ready", action="store_true")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--boot-chatter", type=int, default=0, metavar="N",
                   help="write N numbered lines to stdout and N to stderr at boot")
    ARGS = p.parse_args()

    for i in range(ARGS.boot_chatter):
        sys.stdout.write(f"chatter stdout {i}\n")
        sys.stderr.write(f"chatter stderr {i}\n")
    sys.stdout.flush()
    sys.stderr.flush()

    if ARGS.fail_boot_if_exists and os.path.exists(ARGS.fail_boot_if_exists):
        ARGS.boot_exit = 4
    if ARGS.boot_exit is not None:
        sys.stderr.write(f"worker {INDEX}: configured to fail at boot (exit {ARGS.boot_exit})\n")
        sys.stderr.flush()
        os._exit(ARGS.boot_exit)
    if ARGS.ignore_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: sys.stderr.write("ignoring SIGTERM\n"))
    else:
        def on_term(*_):
            sys.stderr.write(f"worker {INDEX} (pid {os.getpid()}) got SIGTERM\n")
            sys.stderr.flush()
            os._exit(0)
        signal.signal(signal.SIGTERM, on_term)
    if ARGS.boot_delay:
        time.sleep(ARGS.boot_delay)
    if ARGS.uds:
        server = ThreadingUnixServer(ARGS.uds, Handler)
        where = "unix:" + ARGS.uds
    else:
        server = ThreadingTCPServer(("127.0.0.1", ARGS.port), Handler)
        where = f"127.0.0.1:{ARGS.port}"
    print(f"worker {INDEX} (pid {os.getpid()}) listening on {where}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
