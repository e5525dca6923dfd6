"""Routing on the normalised path, the Host a request is for, and the framing the proxy accepts,
against the real binary with one fake upstream per route (the X-Upstream header of the answer
says which route served it; each upstream's stats say what reached it).

Malformed variants of the same inputs (400/501/505, closed, never forwarded) are in
test_malformed.py."""
import pytest

from harness import (KiB, RawConn, assert_proxy_error, build_request, echo_header, http_request,
                     proxy_config)


@pytest.fixture(scope="module")
def env(module_procs):
    cpu = module_procs.upstream("cpu")
    app = module_procs.upstream("app")
    named = module_procs.upstream("named")
    proxy = module_procs.proxy(proxy_config(
        {"cpu": {"endpoints": [cpu.address]},
         "app": {"endpoints": [app.address]},
         "named": {"endpoints": [named.address]}},
        [{"name": "cpu", "match": {"prefix": "/cpu/"}, "upstream": "cpu"},
         {"name": "by-host", "match": {"prefix": "/", "host": "a.example"}, "upstream": "named"},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        limits={"max_header_bytes": "8KiB"}))
    return proxy, cpu, app, named


def send(proxy, raw):
    with RawConn(proxy.port) as c:
        c.send(raw)
        return c.read_response(timeout=5)


# Every way of spelling /cpu/hash that nginx also matched to `location /cpu/`, and the ones an app
# that decodes without resolving (uvicorn/Starlette) would act on as a /cpu/ path.
CPU_VARIANTS = [
    "/%63pu/hash",
    "/cpu%2Fhash",
    "/cpu%2fhash",
    "//cpu/hash",
    "/./cpu/hash",
    "/x/../cpu/hash",
    "/x/%2e%2e/cpu/hash",
    "/x%2F..%2Fcpu%2Fhash",
    "/%2E/cpu//hash?q=/io",
    "/cpu/../io",  # "/io" resolved, but a decode-only app sees a /cpu/ path: the earlier route wins
]


@pytest.mark.parametrize("target", CPU_VARIANTS, ids=CPU_VARIANTS)
def test_encoded_and_dotted_paths_reach_the_cpu_route_never_the_catch_all(env, target):
    proxy, cpu, app, _ = env
    cpu_before, app_before = cpu.stats()["requests"], app.stats()["requests"]
    r = send(proxy, build_request("GET", target))
    assert r.status == 200, r
    assert r.header("x-upstream") == "cpu", r
    # What is forwarded is the original target, byte for byte.
    assert r.json()["target"] == target
    assert cpu.stats()["requests"] == cpu_before + 1
    assert app.stats()["requests"] == app_before, "an encoding trick reached the catch-all route"


@pytest.mark.parametrize("target", ["/io", "/cpu%252Fhash", "/cpux/hash", "/caf%C3%A9"])
def test_paths_that_are_not_cpu_paths_stay_on_the_catch_all(env, target):
    proxy, _, _, _ = env
    r = send(proxy, build_request("GET", target))
    assert r.status == 200, r
    assert r.header("x-upstream") == "app", r
    assert r.json()["target"] == target  # %252F stays the text %2F for the app: decoded once


def test_absolute_form_target_replaces_host_for_routing_and_upstream(env):
    """RFC 9112 3.2.2: the authority of an absolute-form target replaces the received Host."""
    proxy, _, app, named = env
    app_before = app.stats()["requests"]
    r = send(proxy, b"GET http://a.example/echo HTTP/1.1\r\nHost: b.example\r\n\r\n")
    assert r.status == 200, r
    assert r.header("x-upstream") == "named", r  # matched on the authority, not on Host
    echo = r.json()
    assert echo["target"] == "http://a.example/echo"
    assert echo_header(echo, "host") == ["a.example"]
    assert echo_header(echo, "x-forwarded-host") == ["a.example"]
    assert app.stats()["requests"] == app_before

    # And a Host that names the route's host is overridden by the authority as well.
    r = send(proxy, b"GET http://c.example:8080/echo HTTP/1.1\r\nHost: a.example\r\n\r\n")
    assert r.header("x-upstream") == "app", r
    assert echo_header(r.json(), "host") == ["c.example:8080"]


def test_http10_without_host_is_forwarded_with_the_upstream_name_as_host(env):
    """As nginx sends $proxy_host: the name of the upstream (or pool) the route targets. Without
    it the app (HTTP/1.1 from the proxy) would answer 400."""
    proxy, _, _, _ = env
    r = send(proxy, b"GET /echo HTTP/1.0\r\n\r\n")
    assert r.status == 200, r
    echo = r.json()
    assert echo["version"] == "HTTP/1.1"
    assert echo_header(echo, "host") == ["app"]
    assert echo_header(echo, "x-forwarded-host") == []  # the client named no host

    r = send(proxy, b"GET /cpu/echo HTTP/1.0\r\nHost: \r\n\r\n")  # empty: the same as none
    assert r.status == 200, r
    assert echo_header(r.json(), "host") == ["cpu"]

    r = send(proxy, b"GET /echo HTTP/1.0\r\nHost: given.example\r\n\r\n")
    assert echo_header(r.json(), "host") == ["given.example"]


def test_connection_never_strips_host_and_strips_every_name_it_lists(env):
    proxy, _, _, _ = env
    names = [f"X-Hop-{i}" for i in range(40)]
    headers = [("Connection", ", ".join(["Host"] + names + ["X-Request-Id"]))]
    headers += [(n, "1") for n in names] + [("X-End-To-End", "kept"), ("X-Request-Id", "rid-7")]
    r = send(proxy, build_request("GET", "/echo", headers, host="h.example"))
    assert r.status == 200, r
    echo = r.json()
    assert echo_header(echo, "host") == ["h.example"]
    assert echo_header(echo, "x-forwarded-host") == ["h.example"]
    assert echo_header(echo, "x-end-to-end") == ["kept"]
    assert echo_header(echo, "x-request-id") == ["rid-7"]
    received = {n.lower() for n, _ in echo["headers"]}
    assert not received & {n.lower() for n in names}, sorted(received)


@pytest.mark.parametrize("size_line", [b"3 ;a=b", b"3\t; a = \"x;y\"", b"3;a;b=c"],
                         ids=["bws-before-ext", "quoted-ext-value", "two-exts"])
def test_valid_chunk_extensions_are_accepted(env, size_line):
    """RFC 9112 7.1.1 allows BWS around ';' and '=' (llhttp 8.1 refuses `3 ;a=b`)."""
    proxy, _, _, _ = env
    raw = (build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
           + size_line + b"\r\nabc\r\n0 ; last\r\nX-Trailer: t\r\n\r\n")
    with RawConn(proxy.port) as c:
        c.send(raw)
        r = c.read_response(timeout=5)
        assert r.status == 200, r
        assert r.json()["body_length"] == 3
        # The connection stays usable: the chunked body ended where it should.
        r = c.request("GET", "/echo?next")
        assert r.status == 200, r


def test_a_pooled_parser_forgets_the_last_connections_too_large_head(env):
    """A RequestState (parser) goes back to a pool and serves the next connection: a request too
    large there must not make the next connection's malformed request a 431."""
    proxy, _, _, _ = env
    for _ in range(3):
        r = send(proxy, build_request("GET", "/echo", [("X-Big", "a" * (16 * KiB))]))
        assert r.status == 431, r
        body = assert_proxy_error(send(proxy, b"G{T /echo HTTP/1.1\r\nHost: h\r\n\r\n"), 400,
                                  require_request_id=False)
        assert "large" not in body["error"], body
        assert http_request(proxy.port, "GET", "/echo").status == 200
