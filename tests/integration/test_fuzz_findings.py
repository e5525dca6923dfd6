"""What the fuzz targets (tests/fuzz) and the differential test found, end to end on the real
binary: the config ones (a reload could abort the proxy, or hang it eating memory) and the HTTP
ones (requests llhttp 8.1 takes, every lenient flag off, that another reader of the same bytes
reads differently; the malformed heads among them are in test_malformed.py). All fixed; the
minimised inputs are also in tests/fuzz/regressions/.
"""
import json
import time

import pytest

from harness import RawConn, chunked_body, http_request, proxy_config, simple_config

ADMIN = {"listen": "127.0.0.1:0"}


def post_reload(proxy, timeout=5):
    r = http_request(proxy.admin_port, "POST", "/reload", timeout=timeout)
    return r.status, json.loads(r.body)


@pytest.fixture
def admin_proxy(procs):
    up = procs.upstream("app")
    return procs.proxy(simple_config(up, admin=ADMIN)), up


def test_reload_with_an_error_that_cuts_a_utf8_character_answers_400(admin_proxy):
    # The unknown key was cut after 60 bytes, inside "é": the JSON answer of POST /reload threw
    # (type_error.316) and the proxy aborted.
    proxy, _ = admin_proxy
    good = proxy.config_text
    proxy.write_config(good + "a" * 59 + "\u00e9x: 1\n")
    status, body = post_reload(proxy)
    assert status == 400, body
    assert len(body["errors"]) == 1 and "unknown key" in body["errors"][0], body
    assert http_request(proxy.port, "GET", "/echo").status == 200
    assert proxy.running()


def test_reload_with_a_key_holding_a_line_break_reports_one_line(admin_proxy):
    proxy, _ = admin_proxy
    proxy.write_config(proxy.config_text + '"new\\nline": 1\n')
    status, body = post_reload(proxy)
    assert status == 400, body
    assert body["errors"][0].endswith('unknown key "new\\nline" in the top level (expected one of: '
                                      'listen, admin, log, limits, timeouts, upstreams, pools, '
                                      'routes, offload, advice)'), body
    # The log line is one line too (it was two, the key's line break printed as it is).
    proxy.wait_for_line(r'rejected: .*unknown key "new\\nline" in the top level')


def test_reload_of_a_file_starting_with_a_comma_answers_at_once(admin_proxy):
    # yaml-cpp 0.7's LoadAll looped on it, allocating without end: the loop stopped serving and
    # the memory ran out.
    proxy, _ = admin_proxy
    rss_before = proxy.rss()
    proxy.write_config(",isten: \"12listen: \"7.207")
    t0 = time.monotonic()
    status, body = post_reload(proxy, timeout=5)
    assert status == 400, body
    assert body["errors"] == [f"{proxy.config_path}:1:1: YAML syntax error: unexpected \",\""], body
    assert time.monotonic() - t0 < 2
    assert http_request(proxy.port, "GET", "/echo").status == 200
    assert proxy.rss() < rss_before + 16 * 1024 * 1024


# ---- HTTP (proxy/http) ---------------------------------------------------------------------------
H = b"Host: test.local\r\n"

# The request heads the fuzz targets found (runs of SP in the request line, bare CR, HTAB/FF in
# the target) are in test_malformed.py's table, "found by the fuzz targets".


# A declined upgrade (h2c) keeps its chunked body with llhttp, which read the trailers into the
# request's headers; the plain one is decoded by the proxy's own ChunkedValidator.
@pytest.mark.parametrize("upgrade", [b"", b"Connection: upgrade\r\nUpgrade: h2c\r\n"],
                         ids=["plain", "declined upgrade"])
def test_trailers_of_a_buffered_body_do_not_become_header_fields(procs, upgrade):
    # A buffered request's head is written once the body is in: trailer fields kept with the
    # head were sent as header fields, after checkRequestHead and the hop-by-hop rules had run on
    # the head alone: here a second Host, which also became X-Forwarded-Host, and a field the
    # client sent after the body. Trailers are dropped (docs/http.md).
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config(
        {"app": {"endpoints": [up.address]}},
        [{"name": "upload", "match": {"prefix": "/"}, "upstream": "app", "buffer_request": True}]))
    body = chunked_body([b"hello"], trailers=[("Host", "evil.test"), ("X-Injected", "1")])
    with RawConn(proxy.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\n" + H + upgrade + b"Transfer-Encoding: chunked\r\n\r\n"
               + body)
        r = c.read_response(timeout=5)
    assert r.status == 200, r
    echoed = r.json()
    names = [n.lower() for n, _ in echoed["headers"]]
    seen = dict((n.lower(), v) for n, v in echoed["headers"])
    assert "x-injected" not in names, echoed["headers"]
    assert names.count("host") == 1 and seen["host"] == "test.local", echoed["headers"]
    assert seen["x-forwarded-host"] == "test.local", echoed["headers"]
    assert echoed["body_length"] == 5 and not echoed["chunked"] and not echoed["trailers"], echoed
