"""limits.max_connections: at the cap, further connections wait in the kernel's accept backlog
(they are neither refused nor served) and are served as soon as a connection closes."""
import time

from harness import Pending, RawConn, simple_config


def test_connections_beyond_the_cap_wait_then_get_served(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(simple_config(up, limits={"max_connections": 3}))
    held = [RawConn(proxy.port) for _ in range(3)]
    for c in held:
        assert c.request("GET", "/echo").status == 200  # each accepted and kept alive
    waiting = Pending(proxy.port, "/echo?waiting=1", timeout=10)
    # Nothing to await: not being served is what is checked, over a window.
    time.sleep(0.5)
    assert waiting.job.is_alive(), "a connection beyond max_connections was served"
    assert up.stats()["requests"] == 3
    held[0].close()
    r = waiting.result()
    assert r.status == 200, r
    assert r.elapsed >= 0.4
    for c in held[1:]:
        assert c.request("GET", "/echo").status == 200
        c.close()
