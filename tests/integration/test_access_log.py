"""The access log (stdout): one line per request in the format of log.format, or of --log-format
when given, with the same fields in the same order in both formats; the time first, RFC 3339
UTC with milliseconds. Checked by parsing the lines of real requests: ordinary, queued, refused
(queue_full), refused for its size (413, naming buffer_limit), pool-served, malformed (refused
before a route), and one carrying a W3C
traceparent, which is forwarded untouched (with tracestate) and whose trace id is logged."""
import datetime
import json
import re
import uuid

import pytest

from harness import (DeadPort, Pending, RawConn, echo_header, http_request, proxy_config,
                     wait_until)
from offload_support import pool_def

# The documented fields, in their order (README "Access log").
FIELDS = ["time", "request_id", "client", "method", "path", "route", "status", "bytes",
          "duration_ms", "queue_ms", "upstream_ms", "target", "pool", "worker", "worker_pid",
          "overload", "trace_id", "error"]
NUMERIC = {"status", "bytes", "duration_ms", "queue_ms", "upstream_ms", "worker", "worker_pid"}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEXT_PAIR = re.compile(r' ([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "]+)')
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"

# (log.format in the file, --log-format flag or None) -> the format the lines must have
VARIANTS = {
    "text": ("text", None, "text"),
    "json": ("json", None, "json"),
    "text file, --log-format json": ("text", "json", "json"),
    "json file, --log-format text": ("json", "text", "text"),
}


def parse_line(line, fmt):
    """One access line as an ordered list of (key, value); absent values are None."""
    if fmt == "json":
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        return list(obj.items())
    time_text, _, rest = line.partition(" ")
    pairs = [("time", time_text)]
    consumed = len(time_text)
    for m in TEXT_PAIR.finditer(line, consumed):
        assert m.start() == consumed, f"unparsed text at {consumed} in {line!r}"
        raw = m.group(2)
        if raw == "-":
            value = None
        elif raw.startswith('"'):
            value = json.loads(raw)
        elif m.group(1) in NUMERIC:
            value = float(raw) if "." in raw else int(raw)
        else:
            value = raw
        pairs.append((m.group(1), value))
        consumed = m.end()
    assert consumed == len(line), f"unparsed tail {line[consumed:]!r} in {line!r}"
    return pairs


def record(proxy, fmt, needle, timeout=5):
    """The parsed access line containing needle (a request id), checked for shape."""
    line = proxy.wait_for_line(re.escape(needle), stream="stdout", timeout=timeout)
    pairs = parse_line(line, fmt)
    assert [k for k, _ in pairs] == FIELDS, f"fields or their order differ: {line!r}"
    rec = dict(pairs)
    assert TIME_RE.match(rec["time"]), rec["time"]
    when = datetime.datetime.strptime(rec["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    age = abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds())
    assert age < 60, f"time {rec['time']} is not now (UTC): {age:.0f}s off"
    for key in NUMERIC:
        assert rec[key] is None or isinstance(rec[key], (int, float)), (key, line)
    return rec


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def env(request, module_procs):
    file_format, flag, fmt = VARIANTS[request.param]
    up = module_procs.upstream(f"app-{len(module_procs.upstreams)}")
    dead = DeadPort()
    module_procs.on_cleanup(dead.close)
    text = proxy_config(
        {"app": {"endpoints": [up.address]}, "dead": {"endpoints": [dead.address]}},
        [{"name": "dead", "match": {"prefix": "/dead/"}, "upstream": "dead"},
         {"name": "one", "match": {"prefix": "/one/"}, "upstream": "app",
          "limits": {"max_in_flight": 1, "max_queue": 5, "queue_timeout": "10s"}},
         {"name": "full", "match": {"prefix": "/full/"}, "upstream": "app",
          "limits": {"max_in_flight": 1, "max_queue": 0}},
         {"name": "upload", "match": {"prefix": "/upload/"}, "upstream": "app",
          "buffer_request": True, "buffer_limit": "1KiB"},
         {"name": "cpu", "match": {"prefix": "/cpu/"}, "pool": "cpu",
          "limits": {"max_queue": 10, "queue_timeout": "10s"}},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        log={"format": file_format, "access_log": True},
        pools={"cpu": pool_def(workers=1)})
    proxy = module_procs.proxy(text, args=["--log-format", flag] if flag else [])
    wait_until(lambda: any(" ready in " in l for l in proxy.stderr_lines), 15,
               desc="the pool's worker to be ready")
    return proxy, up, fmt


def rid():
    return "t-" + uuid.uuid4().hex


def test_ordinary_request(env):
    proxy, up, fmt = env
    r_id = rid()
    r = http_request(proxy.port, "GET", "/echo?x=1", headers={"X-Request-Id": r_id})
    assert r.status == 200
    rec = record(proxy, fmt, r_id)
    assert rec["request_id"] == r_id and rec["client"] == "127.0.0.1"
    assert (rec["method"], rec["path"], rec["route"], rec["status"]) == ("GET", "/echo?x=1",
                                                                          "default", 200)
    assert rec["bytes"] >= len(r.body) + 20, rec          # head and body
    assert rec["target"] == up.address
    assert 0 <= rec["queue_ms"] < 50 and rec["upstream_ms"] <= rec["duration_ms"], rec
    for key in ("pool", "worker", "worker_pid", "overload", "trace_id", "error"):
        assert rec[key] is None, (key, rec)


def test_the_log_itself_is_in_the_same_format(env):
    proxy, _, fmt = env
    lines = [l for l in proxy.stderr_lines if l.strip()]
    assert lines
    for line in lines:
        if fmt == "json":
            assert json.loads(line)["time"].endswith("Z"), line
        else:
            assert TIME_RE.match(line.split(" ", 1)[0]), line


def test_queued_request_shows_its_wait_apart_from_the_upstream_time(env):
    proxy, up, fmt = env
    first_id, second_id = rid(), rid()
    first = Pending(proxy.port, "/one/delay?ms=600", headers={"X-Request-Id": first_id})
    up.wait_stats(lambda s: s["in_flight"] >= 1, desc="the first request at the upstream")
    second = Pending(proxy.port, "/one/echo", headers={"X-Request-Id": second_id})
    assert first.result().status == 200 and second.result().status == 200
    a, b = record(proxy, fmt, first_id), record(proxy, fmt, second_id)
    assert a["queue_ms"] < 50 and a["upstream_ms"] >= 550, a
    # The second waited for the first's slot, then was quick at the upstream.
    assert b["queue_ms"] >= 200 and b["upstream_ms"] < b["queue_ms"], b
    assert abs(b["duration_ms"] - b["queue_ms"] - b["upstream_ms"]) < 20, b


def test_refused_request_names_the_overload_reason(env):
    proxy, up, fmt = env
    holder, refused_id = rid(), rid()
    busy = Pending(proxy.port, "/full/delay?ms=500", headers={"X-Request-Id": holder})
    up.wait_stats(lambda s: s["in_flight"] >= 1, desc="the slot to be taken")
    r = http_request(proxy.port, "GET", "/full/echo", headers={"X-Request-Id": refused_id})
    assert r.status == 503 and r.header("x-loopguard-overload") == "queue_full"
    assert busy.result().status == 200
    rec = record(proxy, fmt, refused_id)
    assert (rec["route"], rec["status"], rec["overload"]) == ("full", 503, "queue_full"), rec
    assert rec["error"] == r.json()["error"] and rec["upstream_ms"] is None, rec
    assert rec["target"] is None and rec["queue_ms"] is not None, rec


def test_a_body_over_buffer_limit_gets_a_413_that_names_the_key(env):
    proxy, up, fmt = env
    r_id = rid()
    r = http_request(proxy.port, "POST", "/upload/echo", body=b"x" * 4096,
                     headers={"X-Request-Id": r_id})
    assert r.status == 413
    message = r.json()["error"]
    assert "buffer_limit" in message and "buffer_request: false" in message, message
    rec = record(proxy, fmt, r_id)
    assert (rec["route"], rec["status"], rec["error"]) == ("upload", 413, message), rec
    assert rec["queue_ms"] is None and rec["upstream_ms"] is None, rec


def test_a_failed_upstream_is_logged_once_and_the_access_line_says_why(env):
    proxy, _, fmt = env
    r_id = rid()
    r = http_request(proxy.port, "GET", "/dead/x", headers={"X-Request-Id": r_id})
    assert r.status == 502
    rec = record(proxy, fmt, r_id)
    assert (rec["route"], rec["status"], rec["error"]) == ("dead", 502, "connect failed"), rec
    # One line on stderr for the cause (the endpoint's connect), none per request on top.
    wait_until(lambda: [l for l in proxy.stderr_lines if "connect to 127.0.0.1:" in l], 5,
               desc="the connect failure in the log")
    assert not [l for l in proxy.stderr_lines if r_id in l], "the failure was logged twice"


def test_pool_served_request_names_pool_worker_and_pid(env):
    proxy, _, fmt = env
    r_id = rid()
    r = http_request(proxy.port, "GET", "/cpu/work?ms=20", headers={"X-Request-Id": r_id})
    assert r.status == 200
    rec = record(proxy, fmt, r_id)
    assert (rec["route"], rec["pool"], rec["worker"], rec["target"]) == ("cpu", "cpu", 0, "cpu/0")
    assert rec["worker_pid"] == r.json()["pid"], rec
    assert rec["upstream_ms"] >= 15, rec


def test_malformed_request_is_logged_in_the_same_shape(env):
    proxy, _, fmt = env
    with RawConn(proxy.port) as c:
        c.send(b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
    assert r.status == 400
    r_id = r.json()["request_id"]
    rec = record(proxy, fmt, r_id)
    assert rec["status"] == 400 and rec["error"] == r.json()["error"], rec
    assert rec["client"] == "127.0.0.1" and rec["bytes"] == len(r.body) + r_head_len(r), rec
    for key in ("method", "path", "route", "target", "duration_ms", "queue_ms", "upstream_ms"):
        assert rec[key] is None, (key, rec)


def r_head_len(resp):
    """Bytes of the head the proxy wrote for resp (status line, headers, blank line)."""
    head = f"{resp.version} {resp.status} {resp.reason}\r\n"
    head += "".join(f"{n}: {v}\r\n" for n, v in resp.headers) + "\r\n"
    return len(head.encode("latin-1"))


def test_traceparent_and_tracestate_are_forwarded_untouched_and_the_trace_id_logged(env):
    proxy, _, fmt = env
    r_id = rid()
    r = http_request(proxy.port, "GET", "/echo", headers={
        "X-Request-Id": r_id, "traceparent": TRACEPARENT, "tracestate": TRACESTATE})
    echo = r.json()
    assert echo_header(echo, "traceparent") == [TRACEPARENT]
    assert echo_header(echo, "tracestate") == [TRACESTATE]
    assert record(proxy, fmt, r_id)["trace_id"] == TRACEPARENT.split("-")[1]
    # Not well-formed (upper-case hex): still forwarded as it came, but no trace id is logged.
    bad = TRACEPARENT.upper()
    r_id = rid()
    r = http_request(proxy.port, "GET", "/echo", headers={"X-Request-Id": r_id,
                                                           "traceparent": bad})
    assert echo_header(r.json(), "traceparent") == [bad]
    assert record(proxy, fmt, r_id)["trace_id"] is None


def test_every_line_parses(env):
    proxy, _, fmt = env
    # The flush timer writes lines at most ~200 ms late; give the earlier tests' lines time.
    marker = rid()
    assert http_request(proxy.port, "GET", "/echo", headers={"X-Request-Id": marker}).status == 200
    record(proxy, fmt, marker)
    lines = [l for l in proxy.stdout_lines if l.strip()]
    assert len(lines) >= 8
    for line in lines:
        assert [k for k, _ in parse_line(line, fmt)] == FIELDS, line
