#!/usr/bin/python3
"""Open N keep-alive connections to 127.0.0.1:PORT, make one GET on each, keep them all open.

Prints one JSON line once every connection has its response (or failed):
  {"ok": N_OK, "failed": N_FAILED, "seconds": ..., "first_error": "..."}
then holds the connections until standard input closes (or --hold seconds pass, a safety bound),
and closes them with SO_LINGER 0 (RST: no TIME_WAIT left behind by a benchmark). Used by memory.py.

  idle_clients.py PORT [--path /small] [--count 10000] [--parallel 200] [--hold 300]
"""
import argparse
import asyncio
import json
import os
import socket
import struct
import time


async def one(port, path, sem, conns, errors):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), timeout=20)
        except Exception as e:  # noqa: BLE001
            errors.append(f"connect: {e!r}")
            return
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=20)
            lower = head.lower()
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            if b"content-length:" in lower:
                n = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                await asyncio.wait_for(reader.readexactly(n), timeout=20)
            elif b"transfer-encoding: chunked" in lower:
                await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), timeout=20)
            conns.append(writer)
        except Exception as e:  # noqa: BLE001
            errors.append(f"request: {e!r}")
            writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--path", default="/small")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--parallel", type=int, default=200)
    ap.add_argument("--hold", type=float, default=300.0)
    args = ap.parse_args()

    sem = asyncio.Semaphore(args.parallel)
    conns, errors = [], []
    t0 = time.monotonic()
    await asyncio.gather(*(one(args.port, args.path, sem, conns, errors)
                           for _ in range(args.count)))
    print(json.dumps({"ok": len(conns), "failed": len(errors),
                      "seconds": round(time.monotonic() - t0, 2),
                      "first_error": errors[0] if errors else ""}), flush=True)

    loop = asyncio.get_running_loop()
    eof = asyncio.Event()

    def on_stdin():
        try:
            data = os.read(0, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(0)
            eof.set()

    try:
        loop.add_reader(0, on_stdin)
    except (OSError, ValueError, PermissionError):
        pass  # stdin not pollable (a file, /dev/null): rely on --hold
    try:
        await asyncio.wait_for(eof.wait(), timeout=args.hold)
    except asyncio.TimeoutError:
        pass
    for w in conns:
        sock = w.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        w.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
