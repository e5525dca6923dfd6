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
