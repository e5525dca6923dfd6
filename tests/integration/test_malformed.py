"""Ambiguous or malformed requests get a proxy-made 400 (431/413 for limits), the connection is
closed, nothing reaches the upstream, and the proxy keeps serving.

Each malformed request is sent in ONE write, so a proxy that dispatches only after the parser has
consumed what it read never forwards it (even when the error is in the body)."""
import pytest

from harness import KiB, RawConn, assert_proxy_error, build_request, http_request, simple_config

MAX_HEADER = 8 * KiB
MAX_BODY = 64 * KiB


@pytest.fixture(scope="module")
def env(module_procs):
    up = module_procs.upstream("app")
    proxy = module_procs.proxy(simple_config(
        up, limits={"max_header_bytes": "8KiB", "max_body_bytes": "64KiB"}))
    return proxy, up


H = b"Host: test.local\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"

MALFORMED = {
    "content-length and transfer-encoding":
        b"POST /malformed HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n" + CHUNKED + b"\r\n0\r\n\r\n",
    "transfer-encoding and content-length":
        b"POST /malformed HTTP/1.1\r\n" + H + CHUNKED + b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "two different content-length values":
        b"POST /malformed HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "content-length list with different values":
        b"POST /malformed HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\nhello!",
    "negative content-length":
        b"POST /malformed HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
    "transfer-encoding without final chunked":
        b"POST /malformed HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nhello",
    "bad chunk size":
        b"POST /malformed HTTP/1.1\r\n" + H + CHUNKED + b"\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk size overflow":
        b"POST /malformed HTTP/1.1\r\n" + H + CHUNKED + b"\r\nfffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
    "chunk data not followed by CRLF":
        b"POST /malformed HTTP/1.1\r\n" + H + CHUNKED + b"\r\n5\r\nhelloXX0\r\n\r\n",
    "bare LF line endings":
        b"GET /malformed HTTP/1.1\nHost: test.local\nX-A: 1\n\n",
    "bare LF after one header line":
        b"GET /malformed HTTP/1.1\r\nHost: test.local\nX-A: 1\r\n\r\n",
    "bare LF ending the head":
        b"GET /malformed HTTP/1.1\r\n" + H + b"\n",
    "obs-fold with space":
        b"GET /malformed HTTP/1.1\r\n" + H + b"X-A: 1\r\n  folded\r\n\r\n",
    "obs-fold with tab":
        b"GET /malformed HTTP/1.1\r\n" + H + b"X-A: 1\r\n\tfolded\r\n\r\n",
    "space inside header name":
        b"GET /malformed HTTP/1.1\r\n" + H + b"Bad Header: 1\r\n\r\n",
    "space before colon":
        b"GET /malformed HTTP/1.1\r\n" + H + b"X-A : 1\r\n\r\n",
    "invalid character in header name":
        b"GET /malformed HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n",
    "empty header name":
        b"GET /malformed HTTP/1.1\r\n" + H + b": 1\r\n\r\n",
    "control character in header value":
        b"GET /malformed HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n",
    "HTTP/0.9 request line":
        b"GET /malformed\r\n\r\n",
    "HTTP/1.1 without Host":
        b"GET /malformed HTTP/1.1\r\nX-A: 1\r\n\r\n",
    "two Host headers":
        b"GET /malformed HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    "invalid method":
        b"G{T /malformed HTTP/1.1\r\n" + H + b"\r\n",
    "garbage text":
        b"hello there, this is not http\r\n\r\n",
    "TLS client hello on the plain port":
        bytes.fromhex("16030100c4010000c00303") + bytes(range(32)) + b"\x00\x00\x02\x13\x01\x01\x00",
    # Line rules llhttp 8.1 does not enforce (issue 8, item 5): an obs-fold whose first line is
    # empty would be unfolded and acted on; a bare LF may end the request line.
    "obs-fold with empty first line: transfer-encoding":
        b"POST /malformed HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "obs-fold with empty first line: content-length":
        b"POST /malformed HTTP/1.1\r\n" + H + b"Content-Length:\r\n 5\r\n\r\nhello",
    "obs-fold with empty first line: host":
        b"GET /malformed HTTP/1.1\r\nHost:\r\n test.local\r\n\r\n",
    "bare LF ending the request line":
        b"GET /malformed HTTP/1.1\n" + H + b"\r\n",
    "CR without LF in the head":
        b"GET /malformed HTTP/1.1\r\n" + H + b"X-A: 1\rX-B: 2\r\n\r\n",
    "whitespace before the first header":
        b"GET /malformed HTTP/1.1\r\n " + H + b"\r\n",
    "empty transfer-encoding next to content-length":
        b"POST /malformed HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\nContent-Length: 5\r\n\r\nhello",
    "empty transfer-encoding":
        b"POST /malformed HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n\r\n0\r\n\r\n",
    # Chunk syntax (item 8): BWS is allowed before ';' only; extensions are tokens/quoted strings.
    "space between chunk size and CRLF":
        b"POST /malformed HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3 \r\nabc\r\n0\r\n\r\n",
    "chunk extension without a name":
        b"POST /malformed HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3;\r\nabc\r\n0\r\n\r\n",
    "chunk extension name with a space":
        b"POST /malformed HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3;a b\r\nabc\r\n0\r\n\r\n",
    "folded trailer":
        b"POST /malformed HTTP/1.1\r\n" + H + CHUNKED + b"\r\n3\r\nabc\r\n0\r\nX: 1\r\n 2\r\n\r\n",
    # Host (item 7): never copied into X-Forwarded-Host, never routed on.
    "host with a space": b"GET /malformed HTTP/1.1\r\nHost: a b\r\n\r\n",
    "host with a path": b"GET /malformed HTTP/1.1\r\nHost: evil.com/path\r\n\r\n",
    "host with a control character": b"GET /malformed HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
    "host with a port out of range": b"GET /malformed HTTP/1.1\r\nHost: a:99999\r\n\r\n",
    "host with a port that is not a number": b"GET /malformed HTTP/1.1\r\nHost: a:http\r\n\r\n",
    "host percent-encoded": b"GET /malformed HTTP/1.1\r\nHost: %61.example\r\n\r\n",
    "invalid host on HTTP/1.0": b"GET /malformed HTTP/1.0\r\nHost: a b\r\n\r\n",
    "absolute-form with userinfo":
        b"GET http://user:pw@test.local/malformed HTTP/1.1\r\n" + H + b"\r\n",
    "absolute-form with an invalid authority":
        b"GET http://a b/malformed HTTP/1.1\r\n" + H + b"\r\n",
    "absolute-form without a host": b"GET http:///malformed HTTP/1.1\r\n" + H + b"\r\n",
    # Request target (items 1 and 8): what apps read differently is refused, never routed.
    "byte 0x80 in the target": b"GET /malformed\x80 HTTP/1.1\r\n" + H + b"\r\n",
    "raw UTF-8 in the target": b"GET /malformed/caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n",
    "dot-dot above the root": b"GET /../malformed HTTP/1.1\r\n" + H + b"\r\n",
    "encoded dot-dot above the root": b"GET /malformed/%2e%2e/%2E%2E/.. HTTP/1.1\r\n" + H + b"\r\n",
    "NUL in the path": b"GET /malformed%00 HTTP/1.1\r\n" + H + b"\r\n",
    "invalid percent-escape": b"GET /malformed%zz HTTP/1.1\r\n" + H + b"\r\n",
    "truncated percent-escape": b"GET /malformed%4 HTTP/1.1\r\n" + H + b"\r\n",
    "encoded backslash": b"GET /malformed%5Cx HTTP/1.1\r\n" + H + b"\r\n",
    "backslash": b"GET /malformed\\x HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk-form on GET": b"GET * HTTP/1.1\r\n" + H + b"\r\n",
    # Found by the fuzz targets (tests/fuzz/regressions/): llhttp 8.1 takes all of them.
    # HTAB and FF as target bytes: a parser that splits the request line on whitespace (RFC
    # 9112 3 allows it) reads another target.
    "tab in target": b"GET /malformed\t/x HTTP/1.1\r\n" + H + b"\r\n",
    "form feed in target": b"GET /malformed\x0c/x HTTP/1.1\r\n" + H + b"\r\n",
    # Runs of SP between the request line's parts: a reader that splits on one SP sees an empty
    # target or version.
    "two spaces before the target": b"GET  /malformed HTTP/1.1\r\n" + H + b"\r\n",
    "two spaces before the version": b"GET /malformed  HTTP/1.1\r\n" + H + b"\r\n",
    # After "Name:" and no value, llhttp takes CR plus ANY byte for the line end, so the rest
    # was a field of its own, where a reader that turns the bare CR into SP (RFC 9112 2.2) sees
    # one field: a header that reader never saw.
    "bare CR after an empty value":
        b"GET /malformed HTTP/1.1\r\n" + H + b"X-A:\rZX-Injected: 1\r\n\r\n",
    # llhttp skipped a bare CR before the request line as if it were an empty line (CRLF).
    "bare CR before the request line": b"\rGET /malformed HTTP/1.1\r\n" + H + b"\r\n",
}

# Refused with another status than 400, closed, never forwarded.
REFUSED = {
    # A coding other than exactly `chunked` would reach the app undecoded (nginx: 501 too).
    "transfer-encoding gzip, chunked": (501,
        b"POST /malformed HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    "transfer-encoding identity line next to a chunked line": (501,
        b"POST /malformed HTTP/1.1\r\n" + H
        + b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "HTTP/2 connection preface": (505, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    "HTTP/2.0 request line": (505, b"GET /malformed HTTP/2.0\r\n" + H + b"\r\n"),
}


def assert_still_serving_and_nothing_forwarded(proxy, up, before):
    """A normal request still works; the upstream saw exactly that one request since before."""
    r = http_request(proxy.port, "GET", "/echo?after-malformed")
    assert r.status == 200, r
    after = up.stats()
    assert after["bad_requests"] == before["bad_requests"], "something unparseable was forwarded"
    forwarded = after["paths"].get("/malformed", 0) - before["paths"].get("/malformed", 0)
    assert forwarded == 0, f"malformed request forwarded: {after['log'][-3:]}"
    assert after["requests"] == before["requests"] + 1, after["log"][-5:]


def send_and_expect(proxy, raw, status):
    with RawConn(proxy.port) as c:
        c.send(raw)
        r = c.read_response(timeout=3)
        # The request never got far enough to have an id: an empty request_id is fine here.
        body = assert_proxy_error(r, status, require_request_id=False)
        c.wait_closed(3)
    return body


@pytest.mark.parametrize("name", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_request_gets_400_and_close_and_is_not_forwarded(env, name):
    proxy, up = env
    before = up.stats()
    send_and_expect(proxy, MALFORMED[name], 400)
    assert_still_serving_and_nothing_forwarded(proxy, up, before)


@pytest.mark.parametrize("name", list(REFUSED), ids=list(REFUSED))
def test_unsupported_request_gets_its_status_and_close_and_is_not_forwarded(env, name):
    proxy, up = env
    status, raw = REFUSED[name]
    before = up.stats()
    send_and_expect(proxy, raw, status)
    assert_still_serving_and_nothing_forwarded(proxy, up, before)


def test_header_section_over_max_header_bytes_gets_431(env):
    proxy, up = env
    before = up.stats()
    raw = build_request("GET", "/malformed", [("X-Big", "a" * (2 * MAX_HEADER))])
    send_and_expect(proxy, raw, 431)
    assert_still_serving_and_nothing_forwarded(proxy, up, before)


def test_many_headers_over_max_header_bytes_get_431(env):
    proxy, up = env
    before = up.stats()
    raw = build_request("GET", "/malformed", [(f"X-H{i}", "v" * 90) for i in range(200)])
    send_and_expect(proxy, raw, 431)
    assert_still_serving_and_nothing_forwarded(proxy, up, before)


def test_header_section_under_max_header_bytes_is_accepted(env):
    proxy, _ = env
    with RawConn(proxy.port) as c:
        r = c.request("GET", "/echo", [("X-Big", "a" * (MAX_HEADER // 2))])
    assert r.status == 200, r


def test_body_over_max_body_bytes_by_content_length_gets_413_before_the_body(env):
    proxy, up = env
    before = up.stats()
    # Only the head is sent: the declared length alone must be refused.
    raw = build_request("POST", "/malformed", [("Content-Length", str(MAX_BODY + 1))])
    send_and_expect(proxy, raw, 413)
    assert_still_serving_and_nothing_forwarded(proxy, up, before)


def test_chunked_body_over_max_body_bytes_gets_413(env):
    """The body streams, so its head may already be on its way upstream when the limit is
    passed; the client must still get 413 and a closed connection."""
    proxy, _ = env
    data = b"x" * (MAX_BODY + 1)
    raw = (build_request("POST", "/malformed", [("Transfer-Encoding", "chunked")])
           + b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
    send_and_expect(proxy, raw, 413)
    assert http_request(proxy.port, "GET", "/echo").status == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_of_exactly_max_body_bytes_is_accepted(env, chunked):
    proxy, _ = env
    data = bytes(range(256)) * (MAX_BODY // 256)
    assert len(data) == MAX_BODY
    with RawConn(proxy.port) as c:
        if chunked:
            c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
                   + b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        else:
            c.send(build_request("POST", "/echo", body=data))
        r = c.read_response()
    assert r.status == 200, r
    assert r.json()["body_length"] == MAX_BODY
