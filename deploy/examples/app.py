"""loopguard demo app: a small FastAPI service with the pattern loopguard exists for.

Every handler is an `async def`, as in most FastAPI code bases. The I/O route awaits (a SQLite
query through aiosqlite, then a short asyncio.sleep standing in for a call to another service), so
the event loop serves many of them at once. The /cpu/ routes compute inside the `async def`: while
one runs, the event loop runs nothing else, and every I/O request behind it waits.

    GET  /                index: the routes below, and which process answered
    GET  /healthz         liveness (also the readiness probe of loopguard's pool workers)
    GET  /io              aiosqlite query + asyncio.sleep(IO_SLEEP_MS)      -> cheap, awaits
    GET  /cpu/hash        PBKDF2-SHA256, ?iterations=110000 (~40 ms)       -> blocks the loop
    GET  /cpu/factorial   math.factorial(?n=30000) (~30 ms)               -> blocks the loop
    POST /cpu/thumbnail   multipart field "file" (an image) -> thumbnail; ?size=128&format=jpeg|png

Each JSON answer carries the pid of the process that served it (thumbnails: header X-App-Pid),
so you can see the /cpu/ routes being answered by loopguard's pool workers and not by the app.

The same module runs both ways, unchanged:
    main app:        /usr/bin/python3 -m uvicorn app:app --host 127.0.0.1 --port 8000
    offload worker:  /usr/bin/python3 -m uvicorn app:app --uds /path/to/worker.sock
(loopguard starts the workers itself from the pool's `command`; LOOPGUARD_WORKER_INDEX is set there.)

Environment: IO_SLEEP_MS (default 20), HASH_ITERATIONS (default 110000).
"""
import asyncio
import hashlib
import io
import math
import os
import shutil
import tempfile
import time
from typing import Literal

import aiosqlite
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import Response
from PIL import Image, UnidentifiedImageError

IO_SLEEP_MS = float(os.environ.get("IO_SLEEP_MS", "20"))
HASH_ITERATIONS = int(os.environ.get("HASH_ITERATIONS", "110000"))
MAX_IMAGE_PIXELS = 40_000_000  # refuse decompression bombs

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

app = FastAPI(title="loopguard demo app")

_state = {"db": None, "dir": None}


def _who():
    """Which process answered: pid, and the pool worker index when run by loopguard."""
    who = {"pid": os.getpid()}
    index = os.environ.get("LOOPGUARD_WORKER_INDEX")
    if index is not None:
        who["worker"] = int(index)
    return who


@app.on_event("startup")
async def open_db():
    # One small database per process, in its own temporary folder.
    folder = tempfile.mkdtemp(prefix="lg-demo-db-")
    db = await aiosqlite.connect(os.path.join(folder, "demo.db"))
    await db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
    await db.executemany("INSERT INTO items (name, price) VALUES (?, ?)",
                         [(f"item-{i}", round(1.5 * i, 2)) for i in range(1, 101)])
    await db.commit()
    _state["db"], _state["dir"] = db, folder


@app.on_event("shutdown")
async def close_db():
    if _state["db"] is not None:
        await _state["db"].close()
        _state["db"] = None
    if _state["dir"]:
        shutil.rmtree(_state["dir"], ignore_errors=True)
        _state["dir"] = None


@app.get("/")
async def index():
    return {
        "app": "loopguard demo",
        "routes": {
            "GET /io": "aiosqlite query + asyncio.sleep: I/O-bound, never blocks the loop",
            "GET /cpu/hash?iterations=N": f"PBKDF2-SHA256 (default {HASH_ITERATIONS}): CPU-bound",
            "GET /cpu/factorial?n=N": "math.factorial (default 30000): CPU-bound",
            "POST /cpu/thumbnail?size=128&format=jpeg|png": "multipart 'file' image -> thumbnail",
            "GET /healthz": "liveness",
        },
        **_who(),
    }


@app.get("/healthz")
async def healthz():
    return {"status": "ok", **_who()}


@app.get("/io")
async def io_route(item: int = Query(42, ge=1, le=100)):
    db = _state["db"]
    async with db.execute("SELECT id, name, price FROM items WHERE id = ?", (item,)) as cur:
        row = await cur.fetchone()
    async with db.execute("SELECT COUNT(*), SUM(price) FROM items") as cur:
        count, total = await cur.fetchone()
    await asyncio.sleep(IO_SLEEP_MS / 1000.0)  # stands in for a call to another service
    return {"item": {"id": row[0], "name": row[1], "price": row[2]},
            "items": count, "total": total, **_who()}


@app.get("/cpu/hash")
async def cpu_hash(iterations: int = Query(HASH_ITERATIONS, ge=1, le=5_000_000),
                   data: str = "loopguard"):
    # Deliberately inside `async def`, with no await: the event loop is stuck until it returns.
    started = time.perf_counter()
    digest = hashlib.pbkdf2_hmac("sha256", data.encode(), b"demo-salt", iterations).hex()
    return {"digest": digest, "iterations": iterations,
            "cpu_ms": round((time.perf_counter() - started) * 1000, 2), **_who()}


@app.get("/cpu/factorial")
async def cpu_factorial(n: int = Query(30000, ge=0, le=200_000)):
    started = time.perf_counter()
    value = math.factorial(n)
    digits = 1 if n < 2 else int(math.lgamma(n + 1) / math.log(10)) + 1
    return {"n": n, "bits": value.bit_length(), "decimal_digits_approx": digits,
            "cpu_ms": round((time.perf_counter() - started) * 1000, 2), **_who()}


@app.post("/cpu/thumbnail")
async def cpu_thumbnail(file: UploadFile = File(...),
                        size: int = Query(128, ge=8, le=1024),
                        format: Literal["jpeg", "png"] = "jpeg"):
    data = await file.read()
    started = time.perf_counter()
    try:
        with Image.open(io.BytesIO(data)) as img:
            original = img.size
            img.thumbnail((size, size))
            if format == "jpeg" and img.mode not in ("RGB", "L"):
                img = img.convert("RGB")
            out = io.BytesIO()
            img.save(out, format="JPEG" if format == "jpeg" else "PNG", quality=85)
            thumb = img.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as e:
        raise HTTPException(status_code=400, detail=f"not a usable image: {e}")
    return Response(
        content=out.getvalue(),
        media_type=f"image/{format}",
        headers={
            "X-App-Pid": str(os.getpid()),
            "X-Original-Size": f"{original[0]}x{original[1]}",
            "X-Thumbnail-Size": f"{thumb[0]}x{thumb[1]}",
            "X-Cpu-Ms": f"{(time.perf_counter() - started) * 1000:.2f}",
        },
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run("app:app", host=os.environ.get("HOST", "127.0.0.1"),
                port=int(os.environ.get("PORT", "8000")), log_level="warning")
