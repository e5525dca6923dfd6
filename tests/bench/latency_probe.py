#!/usr/bin/python3
"""Load generators for the loopguard benchmarks (Python stdlib only).

  latency_probe.py rate URL --rate 200 --duration 10 [--warmup 1] [--out FILE.json]
      Open loop: request i is due at start + i/rate, whatever happened to the earlier ones, so a
      stalled server cannot slow the offered load down (no coordinated omission). Requests go out
      over a pool of keep-alive connections (a new one is opened when all are busy). A request's
      latency runs from the moment it was *due* to its last response byte, so time spent queued in
      the generator because the server stalled counts too.

  latency_probe.py loop URL --clients 2 --duration 10 [--out FILE.json]
      Closed loop: CLIENTS threads, each sending the next request as soon as the previous one is
      answered, over its own keep-alive connection (the "2 clients hammering the CPU route").

Both print one JSON summary: sent, ok, errors (by kind), achieved req/s (answered with a 2xx per
second of the measured window), latency p50/p90/p99/p999/max in ms; --out also writes the raw
per-request latencies. Only GET; the URL is http://host:port/path (no TLS).
"""
import argparse
import asyncio
import json
import math
import socket
import sys
import threading
import time
import urllib.parse


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(latencies_ms, errors, sent, window_s, extra=None):
    lat = sorted(latencies_ms)
    out = {
        "sent": sent,
        "ok": len(lat),
        "errors": errors,
        "error_count": sum(errors.values()),
        "window_s": round(window_s, 3),
        "rps": round(len(lat) / window_s, 1) if window_s > 0 else 0.0,
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "p999_ms": percentile(lat, 99.9),
        "max_ms": lat[-1] if lat else None,
        "mean_ms": (sum(lat) / len(lat)) if lat else None,
    }
    for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms"):
        if out[k] is not None:
            out[k] = round(out[k], 2)
    if extra:
        out.update(extra)
    return out


def parse_url(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise SystemExit(f"latency_probe: only http://host:port/path URLs, not {url!r}")
    path = (u.path or "/") + (("?" + u.query) if u.query else "")
    return u.hostname, u.port or 80, path


def request_bytes(host, port, path):
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: loopguard-latency-probe\r\n"
            f"Accept: */*\r\n\r\n").encode()


def parse_head(head):
    """(status, content_length or None, chunked, close) from a response head (bytes)."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked, close = None, False, lines[0].startswith("HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection":
            close = "close" in value
    return status, length, chunked, close


# ---- open loop (asyncio) ------------------------------------------------------------------------------
# A keep-alive connection idle this long is closed instead of reused: well below the 5 s after which
# uvicorn closes an idle connection itself, so the generator never races the server's close (the
# same rule as loopguard's upstream idle_timeout).
IDLE_MAX_S = 2.0

async def _read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status, length, chunked, close = parse_head(head[:-4])
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()  # body until close
        close = True
    return status, close


async def run_rate(url, rate, duration, warmup, timeout):
    host, port, path = parse_url(url)
    req = request_bytes(host, port, path)
    loop = asyncio.get_running_loop()
    idle = []  # keep-alive connections not in use
    records = []  # (due offset s, latency ms or None, error kind or None)
    opened = [0]

    async def one(due):
        conn = None
        while idle:  # most recently used first; drop those idle too long (see IDLE_MAX_S)
            candidate, last_used = idle.pop()
            if loop.time() - last_used < IDLE_MAX_S:
                conn = candidate
                break
            candidate[1].close()
        kind = None
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                conn[1].get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                opened[0] += 1
            reader, writer = conn
            writer.write(req)
            status, close = await asyncio.wait_for(_read_response(reader), timeout)
            latency = (loop.time() - due) * 1000.0
            if close:
                writer.close()
            else:
                idle.append((conn, loop.time()))
            if 200 <= status < 300:
                records.append((due - start, latency, None))
                return
            kind = f"http_{status}"
        except asyncio.TimeoutError:
            kind = "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            kind = type(e).__name__
        if conn is not None:
            conn[1].close()
        records.append((due - start, None, kind))

    start = loop.time() + 0.1
    total = int(round(rate * (warmup + duration)))
    tasks = []
    lag_max = 0.0
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag_max = max(lag_max, -delay)
        tasks.append(asyncio.ensure_future(one(due)))
    end_of_sending = loop.time()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)
    for t in tasks:
        if not t.done():
            t.cancel()
    for (_, writer), _ in idle:
        writer.close()

    measured = [r for r in records if r[0] >= warmup]
    lat = [r[1] for r in measured if r[1] is not None]
    errors = {}
    for r in measured:
        if r[2]:
            errors[r[2]] = errors.get(r[2], 0) + 1
    unanswered = sum(1 for i in range(total) if i / rate >= warmup) - len(measured)
    if unanswered > 0:
        errors["unanswered"] = unanswered
    sent = sum(1 for i in range(total) if i / rate >= warmup)
    # Achieved rate: answered requests per second of the window in which they were due (plus the
    # time the stragglers took), so a server that falls behind shows up as < offered.
    last_done = max((r[0] + r[1] / 1000.0 for r in measured if r[1] is not None), default=warmup)
    window = max(duration, last_done - warmup)
    extra = {"mode": "rate", "url": url, "offered_rps": rate, "duration_s": duration,
             "connections_opened": opened[0], "generator_max_lag_ms": round(lag_max * 1000, 2),
             "sending_took_s": round(end_of_sending - start, 3)}
    return summarize(lat, errors, sent, window, extra), measured


# ---- closed loop (threads) ----------------------------------------------------------------------------
def _client(host, port, req, stop_at, timeout, out, errors, lock):
    sock, buf = None, b""
    while time.monotonic() < stop_at:
        t0 = time.monotonic()
        try:
            if sock is None:
                sock = socket.create_connection((host, port), timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b""
            sock.sendall(req)
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("closed before the response head")
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            status, length, chunked, close = parse_head(head)
            if chunked or length is None:
                raise ValueError("unsupported response framing")
            while len(buf) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("closed inside the body")
                buf += chunk
            buf = buf[length:]
            elapsed = (time.monotonic() - t0) * 1000.0
            if close:
                sock.close()
                sock = None
            with lock:
                if 200 <= status < 300:
                    out.append((t0, elapsed))
                else:
                    errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1
            if not 200 <= status < 300:
                time.sleep(0.05)  # a refusal: do not spin
        except (OSError, ValueError) as e:
            with lock:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.05)
    if sock is not None:
        sock.close()


def run_loop(url, clients, duration, timeout):
    host, port, path = parse_url(url)
    req = request_bytes(host, port, path)
    out, errors, lock = [], {}, threading.Lock()
    started = time.monotonic()
    stop_at = started + duration
    threads = [threading.Thread(target=_client, args=(host, port, req, stop_at, timeout, out, errors,
                                                      lock), daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + timeout + 5)
    window = max(duration, time.monotonic() - started)
    lat = [e for _, e in out]
    extra = {"mode": "loop", "url": url, "clients": clients, "duration_s": duration}
    return summarize(lat, errors, len(out) + sum(errors.values()), window, extra), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("rate", help="open loop at a fixed offered rate")
    r.add_argument("url")
    r.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    r.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    r.add_argument("--warmup", type=float, default=1.0, help="seconds sent first, not measured")
    r.add_argument("--timeout", type=float, default=10.0, help="per request (default 10 s)")
    r.add_argument("--out", help="also write the summary and raw latencies here (JSON)")
    c = sub.add_parser("loop", help="closed loop: N clients, back to back")
    c.add_argument("url")
    c.add_argument("--clients", type=int, default=2)
    c.add_argument("--duration", type=float, default=10.0)
    c.add_argument("--timeout", type=float, default=30.0)
    c.add_argument("--out", help="also write the summary and raw latencies here (JSON)")
    args = ap.parse_args(argv)

    if args.mode == "rate":
        summary, raw = asyncio.run(run_rate(args.url, args.rate, args.duration, args.warmup,
                                            args.timeout))
        raw_out = [[round(r[0], 4), None if r[1] is None else round(r[1], 3), r[2]] for r in raw]
    else:
        summary, raw = run_loop(args.url, args.clients, args.duration, args.timeout)
        raw_out = [[round(t, 4), round(e, 3)] for t, e in raw]
    print(json.dumps(summary), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "raw": raw_out}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
