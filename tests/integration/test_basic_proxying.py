"""Plain proxying: methods, bodies both ways (Content-Length and chunked), HEAD/204, HTTP/1.0,
pipelining, 100-continue, forwarding headers, hop-by-hop removal, upstream keep-alive reuse,
routing and the access log."""
import os
import uuid

import pytest

from harness import (MiB, RawConn, assert_proxy_error, build_request, chunked_body, echo_header,
                     http_connection, http_request, pattern_bytes, proxy_config, sha256,
                     simple_config)


@pytest.fixture(scope="module")
def env(module_procs):
    """One fake upstream and a proxy with a catch-all route "default" to it (shared by the tests
    that do not count upstream connections)."""
    up = module_procs.upstream("app")
    proxy = module_procs.proxy(simple_config(up))
    return proxy, up


@pytest.fixture
def fresh(procs):
    """A proxy and upstream of this test alone (for tests that count upstream connections)."""
    up = procs.upstream("app")
    return procs.proxy(simple_config(up)), up


# ---- requests and bodies ------------------------------------------------------------------------
def test_get_forwards_method_path_and_query_and_returns_upstream_response(env):
    proxy, up = env
    r = http_request(proxy.port, "GET", "/some/echo?a=1&b=two")
    assert r.status == 200, r
    assert r.header("x-upstream") == "app"
    e = r.json()
    assert (e["method"], e["path"], e["query"]) == ("GET", "/some/echo", "a=1&b=two")
    assert e["body_length"] == 0


def test_post_with_content_length_body_arrives_byte_identical(env):
    proxy, _ = env
    body = os.urandom(1 * MiB)
    r = http_request(proxy.port, "POST", "/echo", body=body,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    e = r.json()
    assert e["method"] == "POST"
    assert e["body_length"] == len(body) and e["body_sha256"] == sha256(body)
    assert not (echo_header(e, "content-length") and echo_header(e, "transfer-encoding")), e


def test_chunked_upload_arrives_byte_identical(env):
    proxy, _ = env
    pieces = [os.urandom(n) for n in (1, 10, 4096, 65536, 300_000, 7)]
    with RawConn(proxy.port) as c:
        c.send(build_request("POST", "/echo", {"Transfer-Encoding": "chunked"})
               + b"3;name=value\r\nabc\r\n" + chunked_body(pieces))
        r = c.read_response()
    assert r.status == 200, r
    e = r.json()
    whole = b"abc" + b"".join(pieces)
    assert e["body_length"] == len(whole) and e["body_sha256"] == sha256(whole)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_response_arrives_byte_identical(env, chunked):
    proxy, _ = env
    n = 8 * MiB + 13
    r = http_request(proxy.port, "GET", f"/bytes?n={n}" + ("&chunked=1&chunk=100000" if chunked else ""),
                     timeout=30)
    assert r.status == 200, r
    assert len(r.body) == n
    assert r.body == pattern_bytes(0, n)


@pytest.mark.parametrize("code", [201, 404, 418, 500, 503])
def test_upstream_status_passes_through_unchanged(env, code):
    proxy, _ = env
    r = http_request(proxy.port, "GET", f"/status?code={code}")
    assert r.status == code, r
    assert r.header("x-upstream") == "app", "the upstream's own response must pass through"
    assert r.body == f"status {code}\n".encode()
    assert r.header("x-loopguard-overload") is None


def test_head_response_has_no_body_and_connection_stays_usable(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        c.send(build_request("HEAD", "/bytes?n=1000"))
        r = c.read_response(method="HEAD")
        assert r.status == 200 and r.header("content-length") == "1000", r
        r2 = c.request("GET", "/echo?after=head")
        assert r2.status == 200 and r2.json()["query"] == "after=head", r2
        assert c.read_available(0.2) == b"", "bytes after the responses: a body was sent for HEAD"


def test_204_response_has_no_body_and_connection_stays_usable(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        r = c.request("GET", "/status?code=204")
        assert r.status == 204 and r.body == b"", r
        assert r.header("transfer-encoding") is None
        r2 = c.request("GET", "/echo?after=204")
        assert r2.status == 200 and r2.json()["query"] == "after=204", r2


def test_client_connection_close_is_honoured(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        c.send(build_request("GET", "/echo", {"Connection": "close"}))
        r = c.read_response()
        assert r.status == 200, r
        assert c.wait_closed(3) == b""


# ---- HTTP/1.0 ---------------------------------------------------------------------------------------
def test_http10_client_gets_response_and_connection_closed(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        c.send(b"GET /echo?v=10 HTTP/1.0\r\nHost: test.local\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.version in ("HTTP/1.0", "HTTP/1.1")
        assert r.json()["query"] == "v=10"
        assert c.wait_closed(3) == b""


def test_http10_client_never_gets_chunked_encoding(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        c.send(b"GET /bytes?n=100000&chunked=1 HTTP/1.0\r\nHost: test.local\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert "chunked" not in (r.header("transfer-encoding") or "").lower(), r
        assert r.body == pattern_bytes(0, 100000)
        c.wait_closed(3)


def test_http10_request_without_host_is_accepted(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        c.send(b"GET /echo HTTP/1.0\r\n\r\n")
        assert c.read_response().status == 200


# ---- pipelining and 100-continue ---------------------------------------------------------------------
def test_pipelined_requests_are_answered_in_order(env):
    proxy, _ = env
    body = os.urandom(5000)
    with RawConn(proxy.port) as c:
        c.send(build_request("GET", "/delay?ms=300&id=1")
               + build_request("POST", "/echo?id=2", body=body)
               + build_request("GET", "/bytes?n=777")
               + build_request("GET", "/echo?id=4"))
        r1, r2, r3, r4 = (c.read_response() for _ in range(4))
    assert r1.status == 200 and r1.json()["query"] == "ms=300&id=1", r1
    assert r2.json()["query"] == "id=2" and r2.json()["body_sha256"] == sha256(body), r2
    assert r3.body == pattern_bytes(0, 777), r3
    assert r4.json()["query"] == "id=4", r4


def test_expect_100_continue_gets_interim_100_then_final_response(env):
    proxy, _ = env
    body = os.urandom(20000)
    with RawConn(proxy.port) as c:
        c.send(build_request("POST", "/echo", {"Expect": "100-continue",
                                               "Content-Length": str(len(body))}))
        interim = c.read_response(timeout=3)
        assert interim.status == 100, interim
        c.send(body)
        r = c.read_response()
        while r.status == 100:  # a second 100 (relayed from the upstream) is allowed
            r = c.read_response()
    assert r.status == 200, r
    assert r.json()["body_length"] == len(body) and r.json()["body_sha256"] == sha256(body)


# ---- upstream keep-alive -------------------------------------------------------------------------------
def test_sequential_keepalive_requests_reuse_one_upstream_connection(fresh):
    proxy, up = fresh
    conn = http_connection(proxy.port)
    try:
        for i in range(100):
            r = http_request(proxy.port, "GET", f"/echo?i={i}", conn=conn)
            assert r.status == 200, r
    finally:
        conn.close()
    s = up.stats()
    assert s["requests"] == 100, s
    assert s["connections"] == 1, f"expected one pooled upstream connection, saw {s['connections']}"


def test_sequential_client_connections_reuse_one_pooled_upstream_connection(fresh):
    proxy, up = fresh
    for i in range(30):
        assert http_request(proxy.port, "GET", f"/echo?i={i}").status == 200
    s = up.stats()
    assert s["requests"] == 30 and s["connections"] == 1, s


# ---- forwarding headers -----------------------------------------------------------------------------------
def test_x_forwarded_for_is_appended_to_existing_value(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        e = c.request("GET", "/echo", {"X-Forwarded-For": "203.0.113.7"}).json()
    assert echo_header(e, "x-forwarded-for") == ["203.0.113.7, 127.0.0.1"], e["headers"]


def test_x_forwarded_for_proto_and_host_are_set(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        e = c.request("GET", "/echo", {"X-Forwarded-Proto": "https"},
                      host="api.example.test").json()
    assert echo_header(e, "x-forwarded-for") == ["127.0.0.1"], e["headers"]
    assert echo_header(e, "x-forwarded-proto") == ["http"], e["headers"]
    assert echo_header(e, "x-forwarded-host") == ["api.example.test"], e["headers"]


def test_x_request_id_is_kept_when_given_and_returned(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        r = c.request("GET", "/echo", {"X-Request-Id": "given-id-42"})
    assert echo_header(r.json(), "x-request-id") == ["given-id-42"]
    assert r.header("x-request-id") == "given-id-42", r


def test_x_request_id_is_generated_when_missing_and_returned(env):
    proxy, _ = env
    ids = []
    for _ in range(2):
        with RawConn(proxy.port) as c:
            r = c.request("GET", "/echo")
        sent = echo_header(r.json(), "x-request-id")
        assert len(sent) == 1 and sent[0].strip(), r.json()["headers"]
        assert r.header("x-request-id") == sent[0], r
        ids.append(sent[0])
    assert ids[0] != ids[1], "two requests got the same generated id"


def test_hop_by_hop_request_headers_are_not_forwarded(env):
    proxy, _ = env
    headers = [("Connection", "keep-alive, X-Foo"), ("X-Foo", "secret"),
               ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Trailer", "X-T"),
               ("Proxy-Connection", "keep-alive"), ("Upgrade", "foo/1"),
               ("X-End-To-End", "kept")]
    with RawConn(proxy.port) as c:
        e = c.request("GET", "/echo", headers).json()
    got = {n.lower() for n, _ in e["headers"]}
    assert "x-end-to-end" in got, "the end-to-end control header must be forwarded"
    for name in ("x-foo", "keep-alive", "te", "trailer", "proxy-connection", "upgrade"):
        assert name not in got, f"hop-by-hop header {name} forwarded: {e['headers']}"
    for value in echo_header(e, "connection"):
        assert "x-foo" not in value.lower(), e["headers"]


def test_hop_by_hop_response_headers_are_not_returned(env):
    proxy, _ = env
    q = "&".join(["set_header=Keep-Alive:timeout%3D99", "set_header=Connection:X-Bar",
                  "set_header=X-Bar:secret", "set_header=Proxy-Connection:keep-alive",
                  "set_header=Upgrade:foo", "set_header=X-End:kept"])
    with RawConn(proxy.port) as c:
        r = c.request("GET", "/echo?" + q)
        assert r.status == 200, r
        assert r.header("x-end") == "kept", r
        assert r.header("x-bar") is None, r
        assert r.header("proxy-connection") is None, r
        assert r.header("upgrade") is None, r
        assert all("timeout=99" not in v for v in r.header_all("keep-alive")), r
        assert all("x-bar" not in v.lower() for v in r.header_all("connection")), r
        assert c.request("GET", "/echo?again").status == 200


def test_connection_header_naming_content_length_does_not_break_framing(env):
    """`Connection: content-length` must not make the proxy drop the framing header and forward
    the body as a second request (smuggling)."""
    proxy, up = env
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    with RawConn(proxy.port) as c:
        c.send(build_request("POST", "/echo", [("Connection", "close, content-length"),
                                               ("Content-Length", str(len(smuggled)))], smuggled))
        r = c.read_response()
        assert r.status in (200, 400), r
        if r.status == 200:
            e = r.json()
            assert e["body_length"] == len(smuggled) and e["body_sha256"] == sha256(smuggled), e
        else:
            assert_proxy_error(r, 400)
    assert http_request(proxy.port, "GET", "/echo?sync").status == 200
    assert "/smuggled" not in up.stats()["paths"], "the body was forwarded as a request"


# ---- routing ------------------------------------------------------------------------------------------------
ROUTING_CASES = [
    ("GET", "/exact", "test.local", "A"),
    ("GET", "/exact?q=1", "test.local", "A"),  # the query is not part of the path
    ("GET", "/exact/more", "test.local", None),
    ("GET", "/re/123", "test.local", "B"),
    ("GET", "/re/12a", "test.local", None),
    ("GET", "/re/123/x", "test.local", None),  # regex must match the whole path
    ("POST", "/api/echo", "test.local", "C"),
    ("POST", "/api/echo", "special.test", "C"),  # first match wins over the host route
    ("GET", "/api/echo", "special.test", "B"),
    ("GET", "/api/echo", "SPECIAL.test:8080", "B"),  # host: case-insensitive, port ignored
    ("GET", "/api/echo", "other.test", "A"),
    ("DELETE", "/api/echo", "test.local", "A"),
    ("GET", "/nothing/here", "test.local", None),
]


def test_routing_first_match_wins_by_exact_regex_method_host_and_prefix(procs):
    ups = {n: procs.upstream(n) for n in "ABC"}
    config = proxy_config(
        {n.lower(): {"endpoints": [u.address]} for n, u in ups.items()},
        [{"name": "exact-route", "match": {"exact": "/exact"}, "upstream": "a"},
         {"name": "regex-route", "match": {"regex": "/re/[0-9]+"}, "upstream": "b"},
         {"name": "post-api", "match": {"prefix": "/api/", "methods": ["POST"]}, "upstream": "c"},
         {"name": "host-api", "match": {"prefix": "/api/", "host": "special.test"},
          "upstream": "b"},
         {"name": "api", "match": {"prefix": "/api/"}, "upstream": "a"}])
    proxy = procs.proxy(config)
    wrong = []
    for method, path, host, want in ROUTING_CASES:
        with RawConn(proxy.port) as c:
            r = c.request(method, path, host=host, body=b"x" if method == "POST" else b"")
        got = r.header("x-upstream") if r.status == 200 else (None if r.status == 404 else r.status)
        if got != want:
            wrong.append(f"{method} {path} Host: {host}: expected {want or 404}, got {r!r}")
        if want is None and r.status == 404:
            assert_proxy_error(r, 404)
    assert not wrong, "\n".join(wrong)


def test_unmatched_request_gets_404_json_and_is_not_forwarded(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config({"app": {"endpoints": [up.address]}},
                                     [{"name": "only", "match": {"prefix": "/only/"},
                                       "upstream": "app"}]))
    r = http_request(proxy.port, "GET", "/elsewhere")
    assert_proxy_error(r, 404)
    assert up.stats()["requests"] == 0


# ---- access log ---------------------------------------------------------------------------------------------
def test_access_log_line_per_request_on_stdout(env):
    proxy, _ = env
    rid = "access-log-" + uuid.uuid4().hex
    with RawConn(proxy.port) as c:
        assert c.request("GET", "/status?code=418", {"X-Request-Id": rid}).status == 418
    line = proxy.wait_for_line(rid, stream="stdout", timeout=5)
    for part in ("GET", "/status", "default", "418"):
        assert part in line, f"{part!r} missing from access log line {line!r}"
    assert sum(rid in l for l in proxy.stdout_lines) == 1, "one access log line per request"
