#!/usr/bin/python3
"""Clients that do not read what they asked for, for memory.py: N connections to
127.0.0.1:PORT, each with a 4 KiB receive buffer (so the window stays small, as with a slow
mobile client), in one of two modes:

  slow       one GET PATH, then the response is read at --rate bytes per second per connection
  pipeline   --pipeline GETs of PATH sent at once, nothing ever read

Prints one JSON line once every connection is open and its requests are sent:
  {"ok": N_OK, "failed": N_FAILED, "seconds": ..., "first_error": "..."}
then keeps going (reading slowly, or not at all) until standard input closes or --hold seconds
pass, and closes everything with SO_LINGER 0 (RST: no TIME_WAIT left behind by a benchmark).

  memory_clients.py PORT MODE [--path /files/big] [--count 100] [--pipeline 20]
                    [--rate 4096] [--hold 300]
"""
import argparse
import json
import os
import select
import socket
import struct
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("mode", choices=["slow", "pipeline"])
    ap.add_argument("--path", default="/files/big")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--pipeline", type=int, default=20, help="requests per connection (pipeline)")
    ap.add_argument("--rate", type=int, default=4096, help="bytes/s per connection (slow)")
    ap.add_argument("--hold", type=float, default=300.0)
    args = ap.parse_args()

    request = f"GET {args.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    if args.mode == "pipeline":
        request *= args.pipeline
    conns, errors = [], []
    t0 = time.monotonic()
    for _ in range(args.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(20)
            s.connect(("127.0.0.1", args.port))
            s.sendall(request)
            s.setblocking(False)
            conns.append(s)
        except OSError as e:
            errors.append(repr(e))
            s.close()
    print(json.dumps({"ok": len(conns), "failed": len(errors),
                      "seconds": round(time.monotonic() - t0, 2),
                      "first_error": errors[0] if errors else ""}), flush=True)

    deadline = time.monotonic() + args.hold
    tick = 0.25
    share = max(1, int(args.rate * tick))
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], tick)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver closed our stdin: done
        if args.mode == "slow":
            for s in conns:
                try:
                    s.recv(share)
                except (BlockingIOError, OSError):
                    pass
    for s in conns:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
