#!/usr/bin/env python3
"""A fake upstream for loopguard's integration tests: a threaded HTTP/1.1 keep-alive server on raw
sockets, so it reports exactly what arrived (header order, chunked bodies, trailers) and can
misbehave on purpose. Behaviour is chosen per request by the LAST path segment, so a route prefix
can be put in front of it (/api/echo and /echo both echo):

  echo                     JSON: method, target, path, query, version, headers ([name, value] in
                           received order), body length + sha256, trailers, peer port, connection id
  delay?ms=N               wait N ms (noticing if the peer hangs up meanwhile), then 200 JSON
  status?code=N            respond with status N
  bytes?n=N[&chunked=1][&chunk=S]   N bytes of pattern_bytes(); Content-Length or chunked
  stream?n=N...            same as bytes (used for very large bodies)
  reset[?when=head|partial][&n=N][&rst=1]   close without a response (after reading the request),
                           or after a head promising 2N bytes and N of them; rst=1 sends a TCP RST
  slowhead?ms=N[&body_ms=M][&n=K]   wait N ms before the response head, M ms more before the body
  drip?n=N&ms=M[&size=S]   chunked response, one chunk "chunk-<i>" (padded to S) every M ms
  stall?n=N[&cl=L][&ms=M]  a head promising L bytes (default 1e9), N of them, then silence for up
                           to M ms (default 60000, ended early when the peer hangs up), then close
  hold?ms=M                never reads the request body: waits M ms (default 10000), then closes
  ws[?close_after=N][&refuse=1]   Upgrade: websocket -> 101, then echo raw bytes until EOF
  anything else            same as echo
Every request also honours `set_header=Name:Value` (repeatable) and `close=1`.

Control endpoints (exact paths, never counted in the stats):
  /__stats          JSON counters (see Stats.snapshot): requests, distinct connections, open
                    connections, in_flight / peak_in_flight (also per first path segment:
                    group_peaks["/limited"]), per-path counts, an arrival log, aborts, ...
                    A request stops counting as in flight just before the last bytes of its
                    response are written, so a peak never includes one the peer saw finish.
  /__reset_stats    zero the counters
  /__config?keepalive_ms=N&drop_next=N   close idle keep-alive connections after N ms (0 = never);
                    drop the next N requests: read them fully, then close without responding

Usage: fake_upstream.py [--host H] [--port P | --unix PATH] [--name NAME] [--keepalive-timeout MS]
Prints one JSON line {"port": P, "unix": PATH, "pid": PID} on stdout once it accepts connections.
"""
import argparse
import base64
import hashlib
import json
import os
import re
import select
import signal
import socket
import threading
import time
from urllib.parse import parse_qs, urlsplit

# ---- deterministic body pattern (shared with the tests: import fake_upstream) ---------------------
PATTERN_PERIOD = 251  # prime, so chunk boundaries at powers of two never line up with the period
_PERIOD_BYTES = bytes((i * 97 + 13) & 0xFF for i in range(PATTERN_PERIOD))
_BIG_LEN = 1024 * 1024
PATTERN_BLOCK = (_PERIOD_BYTES * (_BIG_LEN // PATTERN_PERIOD + 2))[: _BIG_LEN + PATTERN_PERIOD]
_PATTERN_MV = memoryview(PATTERN_BLOCK)


def pattern_view(offset, length):
    """A zero-copy view of pattern bytes [offset, offset+length) for length <= 1 MiB."""
    start = offset % PATTERN_PERIOD
    return _PATTERN_MV[start : start + length]


def pattern_bytes(offset, length):
    """Bytes [offset, offset+length) of the infinite pattern the fake upstream serves."""
    out = bytearray()
    while length > 0:
        n = min(length, _BIG_LEN)
        out += pattern_view(offset, n)
        offset += n
        length -= n
    return bytes(out)


# ---- HTTP parsing helpers ---------------------------------------------------------------------------
TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
CONTROL_PATHS = ("/__stats", "/__reset_stats", "/__config")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 1024 * 1024


class BadRequest(Exception):
    pass


class PeerGone(Exception):
    pass


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.open_conns = set()  # connections that carried a counted request and are still open
        self.keepalive_ms = 0
        self.drop_next = 0
        self.reset()

    def reset(self):
        """Zero the counters; the caller holds the lock (or is the constructor)."""
        self.requests = 0
        self.bad_requests = 0
        self.seen_conns = set()
        self.in_flight = getattr(self, "in_flight", 0)
        self.peak_in_flight = self.in_flight
        self.group_in_flight = getattr(self, "group_in_flight", {})
        self.group_peaks = dict(self.group_in_flight)
        self.paths = {}
        self.log = []
        self.aborted = 0
        self.idle_closes = 0
        self.peer_closes = 0
        self.dropped = 0
        self.resets = 0
        self.expect_100 = 0
        self.incomplete_bodies = 0
        self.ws_sessions = 0
        self.ws_closed = 0

    def snapshot(self):
        with self.lock:
            return {
                "requests": self.requests,  # counted requests (all but control paths)
                "bad_requests": self.bad_requests,  # unparseable requests (answered 400)
                "connections": len(self.seen_conns),  # distinct connections carrying requests
                "open_connections": len(self.open_conns),
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
                # the same per first path segment ("/limited/delay" -> "/limited")
                "group_in_flight": dict(self.group_in_flight),
                "group_peaks": dict(self.group_peaks),
                "paths": dict(self.paths),
                "log": list(self.log),  # "METHOD target" in arrival order (last 2000)
                "aborted": self.aborted,  # peer hung up while we were delaying / writing
                "idle_closes": self.idle_closes,  # we closed an idle keep-alive connection
                "peer_closes": self.peer_closes,  # the peer closed an idle keep-alive connection
                "dropped": self.dropped,  # requests read and then dropped (drop_next)
                "resets": self.resets,  # /reset requests
                "expect_100": self.expect_100,  # requests that carried Expect: 100-continue
                "incomplete_bodies": self.incomplete_bodies,
                "ws_sessions": self.ws_sessions,
                "ws_closed": self.ws_closed,
                "keepalive_ms": self.keepalive_ms,
                "drop_next": self.drop_next,
            }

    def count_request(self, conn, method, target, path):
        group = group_of(path)
        with self.lock:
            self.requests += 1
            self.seen_conns.add(conn.conn_id)
            self.open_conns.add(conn.conn_id)
            self.paths[path] = self.paths.get(path, 0) + 1
            self.log.append(f"{method} {target}")
            if len(self.log) > 2000:
                del self.log[:1000]
            self.in_flight += 1
            if self.in_flight > self.peak_in_flight:
                self.peak_in_flight = self.in_flight
            n = self.group_in_flight.get(group, 0) + 1
            self.group_in_flight[group] = n
            if n > self.group_peaks.get(group, 0):
                self.group_peaks[group] = n

    def done_request(self, path):
        group = group_of(path)
        with self.lock:
            self.in_flight -= 1
            self.group_in_flight[group] -= 1

    def bump(self, name, by=1):
        with self.lock:
            setattr(self, name, getattr(self, name) + by)

    def conn_closed(self, conn):
        with self.lock:
            self.open_conns.discard(conn.conn_id)


def action_of(req):
    """The behaviour a request asks for: the last segment of its path."""
    return req.path.rstrip("/").rsplit("/", 1)[-1]


def group_of(path):
    """The first path segment: "/limited/delay" -> "/limited", "/echo" -> "/echo"."""
    return "/" + path.lstrip("/").split("/", 1)[0]


class Request:
    def __init__(self):
        self.method = ""
        self.target = ""
        self.version = ""
        self.headers = []  # [(name, value)] as received (str, latin-1)
        self.body = b""
        self.trailers = []
        self.chunked = False
        self.path = ""
        self.query = ""
        self.params = {}

    def header(self, name):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def connection_tokens(self):
        toks = set()
        for v in self.header_all("connection"):
            toks.update(t.strip().lower() for t in v.split(",") if t.strip())
        return toks

    def param(self, name, default=None):
        vals = self.params.get(name)
        return vals[0] if vals else default

    def int_param(self, name, default):
        try:
            return int(self.param(name, default))
        except (TypeError, ValueError):
            return default


class Connection:
    _next_id = 0
    _id_lock = threading.Lock()

    def __init__(self, server, sock, peer):
        self.server = server
        self.stats = server.stats
        self.sock = sock
        self.peer_port = peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None
        self.rbuf = bytearray()
        self.nreq = 0
        with Connection._id_lock:
            Connection._next_id += 1
            self.conn_id = Connection._next_id
        self.open_request = None  # path of the counted request not yet finished

    # -- low-level reading --
    def _recv(self):
        try:
            data = self.sock.recv(256 * 1024)
        except (ConnectionResetError, BrokenPipeError, OSError):
            data = b""
        if not data:
            raise PeerGone()
        self.rbuf += data

    def wait_readable(self, timeout):
        """True if data (or EOF) is ready within timeout seconds; timeout None = forever."""
        if self.rbuf:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def read_line(self):
        while True:
            i = self.rbuf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.rbuf[:i])
                del self.rbuf[: i + 2]
                return line
            if len(self.rbuf) > MAX_HEAD:
                raise BadRequest("line too long")
            self._recv()

    def read_exact(self, n):
        while len(self.rbuf) < n:
            self._recv()
        data = bytes(self.rbuf[:n])
        del self.rbuf[:n]
        return data

    # -- request parsing --
    def read_head(self):
        """Returns head bytes (without the final CRLFCRLF), or None when the peer closed while idle
        or the idle keep-alive timeout passed."""
        while True:
            i = self.rbuf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.rbuf[:i])
                del self.rbuf[: i + 4]
                return head
            if len(self.rbuf) > MAX_HEAD:
                raise BadRequest("head too large")
            if not self.rbuf and self.nreq > 0:
                ka = self.stats.keepalive_ms
                if ka > 0 and not self.wait_readable(ka / 1000.0):
                    self.stats.bump("idle_closes")
                    return None
            try:
                self._recv()
            except PeerGone:
                if self.rbuf:
                    raise BadRequest("truncated head")
                if self.nreq > 0:
                    self.stats.bump("peer_closes")
                return None

    def parse_head(self, head):
        req = Request()
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise BadRequest("bad request line")
        method, target, version = parts
        if not TOKEN_RE.match(method) or not target or version not in (b"HTTP/1.0", b"HTTP/1.1"):
            raise BadRequest("bad request line")
        req.method = method.decode()
        req.target = target.decode("latin-1")
        req.version = version.decode()
        for line in lines[1:]:
            if b"\n" in line or b"\r" in line or line[:1] in (b" ", b"\t"):
                raise BadRequest("bad header line")
            name, sep, value = line.partition(b":")
            if not sep or not TOKEN_RE.match(name):
                raise BadRequest("bad header name")
            req.headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        split = urlsplit(req.target)
        req.path = split.path or req.target
        req.query = split.query
        req.params = parse_qs(split.query, keep_blank_values=True)
        return req

    def read_body(self, req):
        te = req.header_all("transfer-encoding")
        cl = req.header_all("content-length")
        if te and cl:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if te:
            codings = [c.strip().lower() for v in te for c in v.split(",")]
            if codings[-1] != "chunked":
                raise BadRequest("unsupported transfer-encoding")
            req.chunked = True
            body = bytearray()
            while True:
                line = self.read_line()
                size_txt = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_txt, 16)
                except ValueError:
                    raise BadRequest("bad chunk size")
                if size == 0:
                    break
                body += self.read_exact(size)
                if self.read_exact(2) != b"\r\n":
                    raise BadRequest("no CRLF after chunk")
            while True:  # trailers
                line = self.read_line()
                if not line:
                    break
                name, _, value = line.partition(b":")
                req.trailers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
            req.body = bytes(body)
        elif cl:
            if len(set(v.strip() for v in cl)) != 1 or not cl[0].strip().isdigit():
                raise BadRequest("bad content-length")
            req.body = self.read_exact(int(cl[0].strip()))
        return req

    def wants_keepalive(self, req):
        toks = req.connection_tokens()
        if req.version == "HTTP/1.1":
            return "close" not in toks
        return "keep-alive" in toks

    # -- response writing --
    def send_head(self, req, status, headers, keepalive, reason=None):
        self.sock.sendall(self.build_head(req, status, headers, keepalive, reason))

    def build_head(self, req, status, headers, keepalive, reason=None):
        if reason is None:
            reason = REASONS.get(status, "Status")
        out = [f"HTTP/1.1 {status} {reason}"]
        out.append(f"X-Upstream: {self.server.name}")
        for n, v in headers:
            out.append(f"{n}: {v}")
        for item in req.params.get("set_header", []) if req else []:
            n, _, v = item.partition(":")
            out.append(f"{n.strip()}: {v.strip()}")
        if status >= 200 and status != 101:
            out.append("Connection: keep-alive" if keepalive else "Connection: close")
        return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")

    def send_simple(self, req, status, body=b"", ctype="application/json", keepalive=True,
                    extra=()):
        headers = list(extra)
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            headers.append(("Content-Type", ctype))
            headers.append(("Content-Length", str(len(body))))
        head = self.build_head(req, status, headers, keepalive)
        if body and not no_body and req.method != "HEAD":
            head += body
        self.end_request()
        self.sock.sendall(head)

    def send_json(self, req, obj, status=200, keepalive=True):
        self.send_simple(req, status, json.dumps(obj).encode(), keepalive=keepalive)

    def sleep_watching(self, seconds):
        """Sleep, but return False as soon as the peer closes the connection."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                try:
                    peek = self.sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    peek = b""
                if not peek:
                    return False
                time.sleep(min(left, 0.01))  # pipelined data: keep sleeping, do not consume it

    # -- main loop --
    def run(self):
        try:
            while True:
                try:
                    head = self.read_head()
                    if head is None:
                        return
                    req = self.parse_head(head)
                except BadRequest:
                    self.bad_request()
                    return
                control = req.path in CONTROL_PATHS
                self.nreq += 1
                if not control:
                    self.stats.count_request(self, req.method, req.target, req.path)
                    self.open_request = req.path
                try:
                    if req.header("expect") and req.header("expect").lower() == "100-continue":
                        if not control:
                            self.stats.bump("expect_100")
                        self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    try:
                        if control or action_of(req) != "hold":
                            self.read_body(req)
                    except BadRequest:
                        self.bad_request()
                        return
                    except PeerGone:
                        self.stats.bump("incomplete_bodies")
                        return
                    keep = self.dispatch(req, control)
                finally:
                    self.end_request()
                if not keep:
                    return
        except (PeerGone, BrokenPipeError, ConnectionResetError):
            self.stats.bump("aborted")
        except OSError:
            self.stats.bump("aborted")
        finally:
            self.stats.conn_closed(self)
            try:
                self.sock.close()
            except OSError:
                pass

    def end_request(self):
        """The current request stops counting as in flight (once). Called just before the last
        bytes of a response are written: the peer cannot have seen the response end before, so
        peak_in_flight never counts a request the peer already considers finished."""
        if self.open_request is not None:
            self.stats.done_request(self.open_request)
            self.open_request = None

    def bad_request(self):
        self.stats.bump("bad_requests")
        try:
            body = b'{"fake_upstream":"bad request"}'
            self.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass

    def dispatch(self, req, control):
        keep = self.wants_keepalive(req) and req.param("close") != "1"
        if control:
            return self.control(req, keep)
        if self.stats.drop_next > 0:
            with self.stats.lock:
                drop = self.stats.drop_next > 0
                if drop:
                    self.stats.drop_next -= 1
                    self.stats.dropped += 1
            if drop:
                return False
        handler = getattr(self, "do_" + action_of(req), None)
        if handler is None:
            handler = self.do_echo
        return handler(req, keep)

    def control(self, req, keep):
        if req.path == "/__reset_stats":
            with self.stats.lock:
                self.stats.reset()
        elif req.path == "/__config":
            with self.stats.lock:
                if "keepalive_ms" in req.params:
                    self.stats.keepalive_ms = req.int_param("keepalive_ms", 0)
                if "drop_next" in req.params:
                    self.stats.drop_next = req.int_param("drop_next", 0)
        self.send_json(req, self.stats.snapshot(), keepalive=keep)
        return keep

    # -- behaviours --
    def echo_obj(self, req):
        return {
            "upstream": self.server.name,
            "method": req.method,
            "target": req.target,
            "path": req.path,
            "query": req.query,
            "version": req.version,
            "headers": [[n, v] for n, v in req.headers],
            "body_length": len(req.body),
            "body_sha256": hashlib.sha256(req.body).hexdigest(),
            "chunked": req.chunked,
            "trailers": [[n, v] for n, v in req.trailers],
            "peer_port": self.peer_port,
            "conn_id": self.conn_id,
            "conn_request_index": self.nreq,
        }

    def do_echo(self, req, keep):
        self.send_json(req, self.echo_obj(req), keepalive=keep)
        return keep

    def do_delay(self, req, keep):
        ms = req.int_param("ms", 0)
        if not self.sleep_watching(ms / 1000.0):
            self.stats.bump("aborted")
            return False
        self.send_json(req, {"upstream": self.server.name, "slept_ms": ms, "query": req.query},
                       keepalive=keep)
        return keep

    def do_status(self, req, keep):
        code = req.int_param("code", 200)
        self.send_simple(req, code, f"status {code}\n".encode(), ctype="text/plain", keepalive=keep)
        return keep

    def do_bytes(self, req, keep):
        n = req.int_param("n", 0)
        chunked = req.param("chunked") == "1"
        step = max(1, min(req.int_param("chunk", 256 * 1024), _BIG_LEN))
        close_delimited = False
        if chunked and req.version == "HTTP/1.0":
            # HTTP/1.0 has no chunked encoding: a close-delimited body instead.
            chunked, close_delimited, keep = False, True, False
        headers = [("Content-Type", "application/octet-stream")]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        elif not close_delimited:
            headers.append(("Content-Length", str(n)))
        self.send_head(req, 200, headers, keep)
        if req.method == "HEAD":
            return keep
        off = 0
        try:
            while off < n:
                k = min(step, n - off)
                view = pattern_view(off, k)
                if chunked:
                    self.sock.sendall(b"%x\r\n" % k)
                    self.sock.sendall(view)
                    self.sock.sendall(b"\r\n")
                else:
                    self.sock.sendall(view)
                off += k
            if chunked:
                self.sock.sendall(b"0\r\n\r\n")
        except OSError:
            self.stats.bump("aborted")
            return False
        return keep

    do_stream = do_bytes

    def do_reset(self, req, keep):
        self.stats.bump("resets")
        if req.param("when") == "partial":
            n = req.int_param("n", 100)
            self.send_head(req, 200, [("Content-Length", str(2 * n))], True)
            self.sock.sendall(bytes(pattern_view(0, n)))
            time.sleep(0.05)
        if req.param("rst") == "1":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return False

    def do_slowhead(self, req, keep):
        if not self.sleep_watching(req.int_param("ms", 0) / 1000.0):
            self.stats.bump("aborted")
            return False
        n = req.int_param("n", 16)
        self.send_head(req, 200, [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n))], keep)
        if req.method == "HEAD":
            return keep
        if not self.sleep_watching(req.int_param("body_ms", 0) / 1000.0):
            self.stats.bump("aborted")
            return False
        self.sock.sendall(bytes(pattern_view(0, n)))
        return keep

    def do_drip(self, req, keep):
        n = req.int_param("n", 3)
        ms = req.int_param("ms", 100)
        size = req.int_param("size", 0)
        self.send_head(req, 200, [("Content-Type", "text/plain"),
                                  ("Transfer-Encoding", "chunked")], keep)
        try:
            for i in range(n):
                if i and not self.sleep_watching(ms / 1000.0):
                    self.stats.bump("aborted")
                    return False
                data = f"chunk-{i};".encode().ljust(size, b".")
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            self.sock.sendall(b"0\r\n\r\n")
        except OSError:
            self.stats.bump("aborted")
            return False
        return keep

    def do_stall(self, req, keep):
        n = req.int_param("n", 10)
        self.send_head(req, 200, [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(req.int_param("cl", 10 ** 9)))], keep)
        self.sock.sendall(bytes(pattern_view(0, n)))
        if not self.sleep_watching(req.int_param("ms", 60000) / 1000.0):
            self.stats.bump("aborted")
        return False

    def do_hold(self, req, keep):
        time.sleep(req.int_param("ms", 10000) / 1000.0)
        return False

    def do_ws(self, req, keep):
        if req.param("refuse") == "1":
            self.send_json(req, {"refused": True}, status=403, keepalive=keep)
            return keep
        upgrade = (req.header("upgrade") or "").lower()
        key = req.header("sec-websocket-key")
        if "websocket" not in upgrade or "upgrade" not in req.connection_tokens() or not key:
            self.send_json(req, self.echo_obj(req), status=426, keepalive=keep)
            return keep
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        self.send_head(req, 101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                  ("Sec-WebSocket-Accept", accept)], True,
                       reason="Switching Protocols")
        self.stats.bump("ws_sessions")
        close_after = req.int_param("close_after", -1)
        echoed = 0
        try:
            while True:
                if not self.rbuf:
                    try:
                        self._recv()
                    except PeerGone:
                        break
                data = bytes(self.rbuf)
                self.rbuf.clear()
                self.sock.sendall(data)
                echoed += len(data)
                if 0 <= close_after <= echoed:
                    break
        except OSError:
            pass
        finally:
            self.stats.bump("ws_closed")
        return False


REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
    304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
    418: "I'm a teapot", 426: "Upgrade Required", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Server:
    def __init__(self, sock, name, keepalive_ms):
        self.sock = sock
        self.name = name
        self.stats = Stats()
        self.stats.keepalive_ms = keepalive_ms

    def serve_forever(self):
        while True:
            try:
                s, peer = self.sock.accept()
            except InterruptedError:
                continue
            if s.family != socket.AF_UNIX:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, s, peer)
            threading.Thread(target=conn.run, daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description="fake upstream for loopguard integration tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix", help="listen on this unix socket path instead of TCP")
    ap.add_argument("--name", default="upstream", help="reported in X-Upstream and echo bodies")
    ap.add_argument("--keepalive-timeout", type=int, default=0,
                    help="close idle keep-alive connections after this many ms (0 = never)")
    args = ap.parse_args()

    if args.unix:
        try:
            os.unlink(args.unix)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(args.unix)
        port = None
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        port = sock.getsockname()[1]
    sock.listen(1024)

    def on_term(signum, frame):
        if args.unix:
            try:
                os.unlink(args.unix)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(json.dumps({"port": port, "unix": args.unix, "pid": os.getpid()}), flush=True)
    Server(sock, args.name, args.keepalive_timeout).serve_forever()


if __name__ == "__main__":
    main()
