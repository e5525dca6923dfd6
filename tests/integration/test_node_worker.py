"""A pool of real Node (Express) workers, told where to listen through their environment, as Node
apps expect: `env: {PORT: "{port}"}` or `env: {SOCKET_PATH: "{socket}"}` (no placeholder in the
command). Skipped when node or Debian's node-express is missing."""
import os
import shutil
import subprocess

import pytest

from harness import http_request, proxy_config, wait_until
from offload_support import READY_RE

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "workers", "express_worker.js")
NODE_PATH = "/usr/share/nodejs"


@pytest.fixture(scope="module")
def node():
    path = shutil.which("node")
    if not path:
        pytest.skip("node is not installed (apt-get install nodejs node-express)")
    r = subprocess.run([path, "-e", "require('express')"], env={**os.environ, "NODE_PATH": NODE_PATH},
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"express is not in {NODE_PATH} (apt-get install node-express): {r.stderr[:200]}")
    return path


def express_pool(node, env):
    return {"command": [node, WORKER], "workers": 2, "concurrency_per_worker": 1,
            "env": {"NODE_PATH": NODE_PATH, **env},
            "ready": {"path": "/healthz", "timeout": "20s"}}


@pytest.mark.parametrize("env", [{"PORT": "{port}"}, {"SOCKET_PATH": "{socket}"}],
                         ids=["PORT={port}", "SOCKET_PATH={socket}"])
def test_express_workers_get_their_address_from_env(procs, node, env):
    up = procs.upstream("app")
    proxy = procs.proxy(proxy_config(
        {"app": {"endpoints": [up.address]}},
        [{"name": "cpu", "match": {"prefix": "/cpu/"}, "pool": "node",
          "limits": {"max_in_flight": 2, "max_queue": 20, "queue_timeout": "20s"}},
         {"name": "default", "match": {"prefix": "/"}, "upstream": "app"}],
        pools={"node": express_pool(node, env)}))
    wait_until(lambda: len([l for l in proxy.stderr_lines if READY_RE.search(l)]) >= 2, 30,
               desc="both Node workers ready")
    ready_pids = {int(READY_RE.search(l).group(3)) for l in proxy.stderr_lines
                  if READY_RE.search(l)}
    seen = set()
    for _ in range(8):
        r = http_request(proxy.port, "GET", "/cpu/fib?n=22")
        assert r.status == 200, r
        body = r.json()
        assert body["fib"] == 17711
        seen.add(body["pid"])
    assert seen <= ready_pids and seen, (seen, ready_pids)
    # I/O routes still go to the app.
    assert http_request(proxy.port, "GET", "/echo").header("x-upstream") == "app"
    proxy.stop()
