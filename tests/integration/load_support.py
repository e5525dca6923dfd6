"""Closed-loop HTTP clients for tests that need live traffic through loopguard: each client sends
one request at a time on a keep-alive connection, as fast as the answers come (backing off a
little after a 503, as a polite client does). With a fixed service time, N clients keep N requests
in flight or queued, which makes the demand a test expects known by construction.

    load = Load(proxy.port)
    load.set_clients("/cpu/sleep?ms=60", 4)   # start (or stop) clients until 4 run that path
    ...
    load.stop()
"""
import http.client
import threading
import time


class _Client(threading.Thread):
    def __init__(self, load, path):
        super().__init__(daemon=True)
        self.load, self.path = load, path
        self.stop_event = threading.Event()

    def run(self):
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.load.port, timeout=30)
                conn.request("GET", self.path)
                r = conn.getresponse()
                r.read()
                self.load.count(r.status)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                if r.status == 503:
                    time.sleep(self.load.backoff_s)
            except (OSError, http.client.HTTPException):
                if conn:
                    conn.close()
                conn = None
                self.load.count("error")
                time.sleep(0.01)
        if conn:
            conn.close()


class Load:
    def __init__(self, port, backoff_s=0.05):
        self.port = port
        self.backoff_s = backoff_s
        self.clients = {}   # path -> [client]
        self.codes = {}
        self.lock = threading.Lock()

    def count(self, status):
        with self.lock:
            self.codes[status] = self.codes.get(status, 0) + 1

    def set_clients(self, path, n):
        running = self.clients.setdefault(path, [])
        while len(running) < n:
            c = _Client(self, path)
            c.start()
            running.append(c)
        while len(running) > n:
            c = running.pop()
            c.stop_event.set()
        return self

    def total_clients(self):
        return sum(len(v) for v in self.clients.values())

    def stop(self, timeout=35):
        stopping = [c for v in self.clients.values() for c in v]
        for c in stopping:
            c.stop_event.set()
        for c in stopping:
            c.join(timeout)
        self.clients = {}


def mixed_config(upstream, max_queue=1, queue_timeout="150ms", pools=None, routes=(),
                 upstreams=None, first_routes=()):
    """loopguard config text for mixed_traffic: a 2-slot pool route /cpu/ (2 test workers) with
    the given queue, an upstream route /api/ to `upstream`, an admin port; extra pools and routes
    (before /api/; first_routes before /cpu/) and upstreams as given."""
    from harness import proxy_config
    from offload_support import pool_def, pool_route
    return proxy_config(
        {"app": {"endpoints": [upstream.address]}, **(upstreams or {})},
        [*first_routes,
         pool_route("cpu", "/cpu/", max_in_flight=2, max_queue=max_queue, queue_timeout=queue_timeout),
         *routes,
         {"name": "api", "match": {"prefix": "/api/"}, "upstream": "app", "limits": {"max_in_flight": 50}}],
        pools={"cpu": pool_def(workers=2), **(pools or {})}, admin={"listen": "127.0.0.1:0"},
        log={"access_log": False})


def mixed_traffic(port):
    """Pool requests wider than a 2-slot pool route at /cpu/ (so some queue and some are refused)
    and quick requests to an upstream route at /api/, until .stop()."""
    load = Load(port)
    load.set_clients("/cpu/sleep?ms=60", 4)
    load.set_clients("/api/delay?ms=5", 2)
    return load
