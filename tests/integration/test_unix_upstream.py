"""Unix sockets on both sides: an upstream endpoint `unix:/path`, and the proxy's own listener."""
import os
import subprocess

from harness import MiB, http_connection, http_request, proxy_config, sha256, simple_config


def test_upstream_on_unix_socket_serves_requests_over_one_pooled_connection(procs):
    up = procs.upstream("unixup", unix=True)
    assert up.address.startswith("unix:/")
    proxy = procs.proxy(simple_config(up))
    body = os.urandom(1 * MiB)
    r = http_request(proxy.port, "POST", "/echo", body=body)
    assert r.status == 200, r
    e = r.json()
    assert e["upstream"] == "unixup" and e["peer_port"] is None
    assert e["body_sha256"] == sha256(body)
    conn = http_connection(proxy.port)
    try:
        for i in range(20):
            assert http_request(proxy.port, "GET", f"/echo?i={i}", conn=conn).status == 200
    finally:
        conn.close()
    s = up.stats()
    assert s["requests"] == 21 and s["connections"] == 1, s


def test_proxy_listening_on_unix_socket(procs):
    up = procs.upstream("app")
    sock_path = os.path.join(procs.workdir, "proxy.sock")
    proxy = procs.proxy(proxy_config({"app": {"endpoints": [up.address]}},
                                     [{"name": "default", "match": {"prefix": "/"},
                                       "upstream": "app"}],
                                     listen=f"unix:{sock_path}"))
    assert proxy.unix_path == sock_path, proxy.stderr_lines
    r = http_request(("unix", sock_path), "GET", "/echo?via=unix")
    assert r.status == 200 and r.json()["query"] == "via=unix", r
    # A real client too.
    out = subprocess.run(["curl", "-sS", "--max-time", "5", "--unix-socket", sock_path,
                          "-o", "-", "-w", "\\n%{http_code}", "http://svc.local/echo?via=curl"],
                         capture_output=True, text=True, timeout=10)
    body, _, code = out.stdout.rpartition("\n")
    assert code == "200", out
    assert '"via=curl"' in body
    proxy.stop()


def test_unix_upstream_behind_unix_listener(procs):
    up = procs.upstream("unixup", unix=True)
    sock_path = os.path.join(procs.workdir, "front.sock")
    proxy = procs.proxy(simple_config(up).replace('listen: "127.0.0.1:0"',
                                                  f'listen: "unix:{sock_path}"'))
    assert proxy.unix_path == sock_path
    r = http_request(("unix", sock_path), "GET", "/bytes?n=100000")
    assert r.status == 200 and len(r.body) == 100000
