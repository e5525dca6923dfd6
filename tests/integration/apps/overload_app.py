#!/usr/bin/python3
"""An async web app whose capacity is known by construction, for the overload tests and the
overload benchmark. One process, one asyncio event loop, HTTP/1.1 with keep-alive (stdlib only).

  GET /cpu?ms=20   blocks the event loop for `ms` of wall time (a CPU-bound handler inside
                   `async def`): one request at a time, capacity 1000/ms requests per second
  GET /db?ms=20    waits for one of --pool connections of a "database" (an asyncio.Semaphore),
                   then sleeps `ms` holding it: capacity pool*1000/ms per second; beyond --pool
                   concurrent requests, the app's own queue (the semaphore's waiters) grows
  GET /io?ms=20    sleeps `ms` (never a bottleneck)
  GET /stats       JSON: served per route, in flight now and at peak, the semaphore's peak waiters
  GET /reset       zeroes the peaks and counters

Prints "listening on 127.0.0.1:PORT" once it accepts connections (--port 0 picks a free port).
The busy wait is on wall time, so the capacity stays what it says on a machine shared with
other work (a neighbour slows the load generator, not the service time).
"""
import argparse
import asyncio
import json
import sys
import time
import urllib.parse


class App:
    def __init__(self, pool, default_ms):
        self.pool = asyncio.Semaphore(pool)
        self.pool_size = pool
        self.default_ms = default_ms
        self.reset()

    def reset(self):
        self.served = {}
        self.in_flight = 0
        self.in_flight_peak = 0
        self.db_waiting = 0
        self.db_waiting_peak = 0

    async def handle(self, path, query):
        ms = float(query.get("ms", [self.default_ms])[0])
        route = path.rstrip("/").rsplit("/", 1)[-1] or "/"
        if route == "stats":
            return 200, {"served": self.served, "in_flight": self.in_flight,
                         "in_flight_peak": self.in_flight_peak,
                         "db_waiting_peak": self.db_waiting_peak, "pool": self.pool_size}
        if route == "reset":
            self.reset()
            return 200, {"ok": True}
        if route not in ("cpu", "db", "io"):
            return 404, {"error": "no such route"}
        self.in_flight += 1
        self.in_flight_peak = max(self.in_flight_peak, self.in_flight)
        try:
            if route == "cpu":
                end = time.perf_counter() + ms / 1000.0
                while time.perf_counter() < end:
                    pass
            elif route == "db":
                self.db_waiting += 1
                self.db_waiting_peak = max(self.db_waiting_peak, self.db_waiting)
                async with self.pool:
                    self.db_waiting -= 1
                    await asyncio.sleep(ms / 1000.0)
            else:
                await asyncio.sleep(ms / 1000.0)
        finally:
            self.in_flight -= 1
        self.served[route] = self.served.get(route, 0) + 1
        return 200, {"route": route, "ms": ms}

    async def connection(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                u = urllib.parse.urlsplit(target)
                status, body = await self.handle(u.path, urllib.parse.parse_qs(u.query))
                data = json.dumps(body).encode()
                close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                writer.write((f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
                              f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                              f"{'Connection: close' if close else 'Connection: keep-alive'}"
                              f"\r\n\r\n").encode() + data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--pool", type=int, default=4, help="the /db route's connection pool")
    ap.add_argument("--ms", type=float, default=20, help="default service time of a request")
    args = ap.parse_args()
    app = App(args.pool, args.ms)
    server = await asyncio.start_server(app.connection, "127.0.0.1", args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
