#!/usr/bin/python3
"""A slow HTTP client: GET PATH from 127.0.0.1:PORT and read the body at a bounded pace.

The first --slow-mib MiB are read at --rate MiB/s, with one full stop of --pause seconds after
--pause-at-mib MiB; the rest is read as fast as possible. A proxy in between has to apply
backpressure to its upstream (or buffer what the reader does not take yet: that is what
streaming.py measures). Prints one JSON line at the end:
  {"status": 200, "bytes": N, "expected": N, "seconds": ..., "slow_seconds": ..., "error": ""}

  slow_reader.py PORT PATH [--rate 64] [--slow-mib 256] [--pause 2] [--pause-at-mib 128]
                 [--timeout 120]
"""
import argparse
import json
import socket
import time

MiB = 1 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("path")
    ap.add_argument("--rate", type=float, default=64.0, help="MiB/s during the slow part")
    ap.add_argument("--slow-mib", type=float, default=256.0)
    ap.add_argument("--pause", type=float, default=2.0)
    ap.add_argument("--pause-at-mib", type=float, default=128.0)
    ap.add_argument("--timeout", type=float, default=120.0, help="overall bound, seconds")
    args = ap.parse_args()

    out = {"status": None, "bytes": 0, "expected": None, "seconds": None, "slow_seconds": None,
           "error": ""}
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    try:
        s = socket.create_connection(("127.0.0.1", args.port), timeout=30)
        s.sendall(f"GET {args.path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = s.recv(65536)
            if not b:
                raise RuntimeError("closed before the response head")
            buf += b
        head, _, rest = buf.partition(b"\r\n\r\n")
        out["status"] = int(head.split(b" ", 2)[1])
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                out["expected"] = int(v.strip())
        got = out["bytes"] = len(rest)
        slow_bytes = args.slow_mib * MiB
        pause_at = args.pause_at_mib * MiB
        paused = args.pause <= 0
        slow_start = time.monotonic()
        while out["expected"] is None or got < out["expected"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not done after {args.timeout:.0f} s")
            if got < slow_bytes:
                if not paused and got >= pause_at:
                    time.sleep(args.pause)
                    paused = True
                    slow_start += args.pause
                ahead = got / (args.rate * MiB) - (time.monotonic() - slow_start)
                if ahead > 0:
                    time.sleep(ahead)
                b = s.recv(65536)
            else:
                if out["slow_seconds"] is None:
                    out["slow_seconds"] = round(time.monotonic() - t0, 2)
                b = s.recv(1 << 20)
            if not b:
                break
            got += len(b)
            out["bytes"] = got
        s.close()
    except Exception as e:  # noqa: BLE001 - reported, never raised
        out["error"] = repr(e)
    out["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
