"""Differential check on the real binary: no desync between what a client sent and what the
upstream received (issue 8, "Also build").

A seeded mutation generator (differential_cases.py) makes a few thousand raw requests, the
request smuggling classics among them (CL.TE, TE.CL, TE.TE variants, duplicate Content-Length,
obs-fold, bare LF and CR, whitespace before colons, bad chunk lines, pipelined pairs with a
request hidden in a body) plus random byte edits. Each goes on its own connection to loopguard
in front of a raw recording upstream that reads what arrives with h11, as an app server would.
Then, for every request the upstream got:

  - it must be one of the requests the strict reader (strict_http.py) finds in what the client
    sent: a request that appears upstream but that the client did not send as a request of its
    own (a smuggled one) is a desync;
  - its method, target, end-to-end header fields (in order) and body must be the client's;
  - it must carry one Host, first: the host the client named (an absolute-form target's
    authority replaces the received Host, RFC 9112 3.2.2), or the upstream's name for an
    HTTP/1.0 request that named none; X-Forwarded-Host the same, only for a named host;
  - loopguard must not have forwarded a request the strict reader refuses as mis-framed.

Every request carries `X-Request-Id: dc-<case>-<n>` as its first header field (the generator
never edits that line), so each upstream request is matched to the request it came from.
"""
import collections
import concurrent.futures
import os
import re
import socketserver
import threading
import time

import h11
import pytest

import differential_cases
import strict_http
from harness import ConnectionClosed, RawConn, proxy_config

CASES = int(os.environ.get("LOOPGUARD_DIFF_CASES", "2500"))
SEED = int(os.environ.get("LOOPGUARD_DIFF_SEED", "8"))
TIME_BUDGET = 40.0  # seconds for sending the cases (the whole test stays under 60 s)
CASE_DEADLINE = 3.0  # a case whose responses have not all come by then is cut by the client
CLIENTS = 16

# Header fields a proxy drops (RFC 9110 7.6.1 and the de-facto ones), rewrites (framing) or
# writes itself (X-Forwarded-*, X-Request-Id): the rest must reach the upstream unchanged.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
              "proxy-authenticate", "proxy-authorization", "expect", "transfer-encoding",
              "content-length"}
PROXY_OWN = {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id",
             "content-length", "transfer-encoding"}
UPSTREAM = "app"  # its name is the Host sent for an HTTP/1.0 request without one


# ---- the recording upstream ---------------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # dicts: id, method, target, fields, body, complete, raw_conn
        self.errors = []    # (what h11 said, the bytes that connection got)

    def add(self, rec):
        with self.lock:
            self.requests.append(rec)


class UpstreamHandler(socketserver.BaseRequestHandler):
    def handle(self):
        rec = self.server.recorder
        conn = h11.Connection(h11.SERVER)
        raw = bytearray()
        current = None
        self.request.settimeout(30)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = self.request.recv(65536)
                    raw += data
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    fields = [(n.decode("latin-1"), v.decode("latin-1"))
                              for n, v in event.headers.raw_items()]
                    ids = [v for n, v in fields if n.lower() == "x-request-id"]
                    current = {"id": ids[0] if len(ids) == 1 else None, "method": event.method.decode(),
                               "target": event.target.decode("latin-1"), "fields": fields,
                               "body": bytearray(), "complete": False}
                    rec.add(current)
                elif isinstance(event, h11.Data):
                    current["body"] += event.data
                elif isinstance(event, h11.EndOfMessage):
                    current["complete"] = True
                    current["trailers"] = [(n.decode("latin-1"), v.decode("latin-1"))
                                           for n, v in event.headers.raw_items()]
                    self.request.sendall(conn.send(h11.Response(
                        status_code=200, headers=[("Content-Length", "2")])) +
                        conn.send(h11.Data(data=b"ok")) + conn.send(h11.EndOfMessage()))
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except h11.RemoteProtocolError as e:
            if current is not None and not current["complete"] and \
                    str(e).startswith("peer closed connection without sending complete message body"):
                return  # loopguard gave up on a request mid-body and closed: it stays incomplete
            with rec.lock:
                rec.errors.append((str(e), bytes(raw[-2000:])))
        except OSError:
            return


class UpstreamServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


# ---- one case on the client side ----------------------------------------------------------------
def run_case(port, case):
    """Sends the case's bytes on a fresh connection and reads responses until every request the
    strict reader saw is answered, the proxy closes, or the deadline passes."""
    expected, stop = strict_http.read_requests(case.data)
    deadline = time.monotonic() + CASE_DEADLINE
    got = 0
    try:
        with RawConn(port, timeout=CASE_DEADLINE) as c:
            if not c.try_send(case.data):
                return "send-failed", got
            while stop is not None or got < len(expected):
                left = deadline - time.monotonic()
                if left <= 0:
                    return "deadline", got
                c.read_response(timeout=left)
                got += 1
            return "answered", got
    except ConnectionClosed:
        return "closed", got
    except OSError:
        return "closed", got


def end_to_end(fields):
    named = {t.strip().lower() for n, v in fields if n.lower() in ("connection", "proxy-connection")
             for t in v.split(",")}
    return [(n, v) for n, v in fields if n.lower() not in HOP_BY_HOP and n.lower() not in PROXY_OWN
            and n.lower() not in named]


def named_host(ref):
    """The host the client's request names: an absolute-form target's authority, else its Host
    (None: it named none)."""
    m = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", ref["target"])
    if m:
        return m.group(1)
    return next((v for n, v in ref["fields"] if n.lower() == "host"), None) or None


def compare(up, ref):
    """Differences between what the upstream got and the client's request, as the strict
    reader read it."""
    problems = []
    host = named_host(ref)
    hosts = [v for n, v in up["fields"] if n.lower() == "host"]
    if up["fields"][:1] != [("Host", host or UPSTREAM)] or len(hosts) != 1:
        problems.append(f"Host fields {hosts!r} (first field {up['fields'][:1]!r}), not one "
                        f"{host or UPSTREAM!r} first")
    forwarded_hosts = [v for n, v in up["fields"] if n.lower() == "x-forwarded-host"]
    if forwarded_hosts != ([host] if host else []):
        problems.append(f"X-Forwarded-Host {forwarded_hosts!r} for host {host!r}")
    if up["method"] != ref["method"]:
        problems.append(f"method {up['method']!r} != {ref['method']!r}")
    if up["target"] != ref["target"]:
        problems.append(f"target {up['target']!r} != {ref['target']!r}")
    got = [(n, v) for n, v in up["fields"] if n.lower() not in PROXY_OWN]
    want = end_to_end(ref["fields"])
    if got != want:
        problems.append(f"header fields {got!r} != {want!r}")
    body = bytes(up["body"])
    if up["complete"] and body != ref["body"]:
        problems.append(f"body of {len(body)} bytes != {len(ref['body'])} bytes")
    if not up["complete"] and not ref["body"].startswith(body):
        problems.append("partial body is not a prefix of the client's body")
    return problems


@pytest.fixture
def recording_upstream():
    recorder = Recorder()
    server = UpstreamServer(("127.0.0.1", 0), UpstreamHandler)
    server.recorder = recorder
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_what_the_upstream_receives_is_what_the_client_sent(procs, recording_upstream):
    port = recording_upstream.server_address[1]
    routes = [{"name": "buffered", "match": {"prefix": "/buffered"}, "upstream": UPSTREAM,
               "buffer_request": True, "buffer_limit": 65536},
              {"name": "stream", "match": {"prefix": "/"}, "upstream": UPSTREAM}]
    proxy = procs.proxy(proxy_config({UPSTREAM: {"endpoints": [f"127.0.0.1:{port}"]}}, routes,
                                     timeouts={"header": "500ms", "idle": "5s"}))
    cases = differential_cases.generate(CASES, SEED)
    by_id = {}
    for case in cases:
        for request_id in case.ids:
            by_id[request_id] = case

    started = time.monotonic()
    outcomes = collections.Counter()
    done = 0
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        futures = []
        for case in cases:
            futures.append(pool.submit(run_case, proxy.port, case))
        for f in futures:
            if time.monotonic() - started > TIME_BUDGET:
                f.cancel()
                continue
            outcome, _answers = f.result()
            outcomes[outcome] += 1
            done += 1
    sent_for = time.monotonic() - started
    proxy.stop()  # graceful: everything in flight reaches the upstream before this returns
    recorder = recording_upstream.recorder

    desyncs, compared, refused_by_reference = [], 0, 0
    for up in recorder.requests:
        case = by_id.get(up["id"])
        if case is None:
            desyncs.append(f"upstream got a request the client never sent as one: id {up['id']!r} "
                           f"{up['method']} {up['target']!r}")
            continue
        expected, stop = strict_http.read_requests(case.data)
        ref = next((r for r in expected if up["id"] in
                    [v for n, v in r["fields"] if n.lower() == "x-request-id"]), None)
        where = f"case {case.name} ({case.kind}): {case.data[:300]!r}"
        if ref is None:
            refused_by_reference += 1
            if stop and stop[0] == "incomplete" and not up["complete"]:
                pass  # both still waiting for the rest of the same request
            else:
                desyncs.append(f"forwarded {up['id']} that the strict reader does not read as a "
                               f"request (it stopped: {stop}); {where}")
            continue
        compared += 1
        problems = compare(up, ref)
        if problems:
            desyncs.append(f"{up['id']}: " + "; ".join(problems) + f"; {where}")
    for what, raw in recorder.errors:
        desyncs.append(f"the upstream could not parse what loopguard sent ({what}): {raw[:300]!r}")

    summary = (f"{done} cases in {sent_for:.1f} s, outcomes {dict(outcomes)}; "
               f"{len(recorder.requests)} requests reached the upstream, {compared} compared, "
               f"{refused_by_reference} not requests to the strict reader")
    print(summary)
    if os.environ.get("LOOPGUARD_DIFF_REPORT"):
        with open(os.environ["LOOPGUARD_DIFF_REPORT"], "w") as f:
            f.write(summary + "\n" + "\n".join(desyncs) + "\n")
    assert not desyncs, f"{len(desyncs)} desyncs ({summary}):\n" + "\n".join(desyncs[:20])
    # A check that compares nothing proves nothing.
    assert done >= min(CASES, 500), summary
    assert compared >= done // 3, summary
