"""A FastAPI app whose endpoints cover every way a handler can spend its time, each with the
verdict its physics says (tests/integration/test_advisor.py checks them):

  blocks the loop (blocks_loop)
    GET  /cpu/loop?ms=12        pure Python spinning inside the `async def`
    GET  /cpu/gil-thread?n=     math.factorial in run_in_executor(ThreadPoolExecutor): one C
                                call that never releases the GIL, so the loop stalls as if inline
  only waits (ok)
    GET  /cpu/nogil-thread      hashlib.sha256 of 2 MiB in a thread: releases the GIL
    GET  /cpu/process           CPU in a ProcessPoolExecutor
    GET  /sync/sleep            a `def` endpoint (Starlette's threadpool) that time.sleep()s
    GET  /io/sleep              asyncio.sleep
    GET  /db                    an aiosqlite query
    GET  /lock                  an asyncio.Lock held across an await (serialises itself)
    POST /upload                a multipart file upload, read and measured
  GET /health                   trivial (the probe's path)

Every answer carries the serving pid. Run: uvicorn advisor_app:app --port P [--workers 2].
Environment: ADVISOR_LOOP_MS (default 12), ADVISOR_FACTORIAL_N (default 35000).
"""
import asyncio
import concurrent.futures
import hashlib
import math
import os
import sqlite3
import tempfile
import time

import aiosqlite
from fastapi import FastAPI, File, UploadFile

LOOP_MS = float(os.environ.get("ADVISOR_LOOP_MS", "12"))
FACTORIAL_N = int(os.environ.get("ADVISOR_FACTORIAL_N", "35000"))
SLEEP_S = 0.02
BIG = os.urandom(2 * 1024 * 1024)

app = FastAPI()
_state = {}


def _spin(ms):
    end = time.perf_counter() + ms / 1000.0
    x = 0
    while time.perf_counter() < end:
        x += 1
    return x


def _factorial_bits(n):
    return math.factorial(n).bit_length()


def _sha(data):
    return hashlib.sha256(data).hexdigest()


@app.on_event("startup")
async def startup():
    _state["threads"] = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    _state["processes"] = concurrent.futures.ProcessPoolExecutor(max_workers=1)
    # Warm the process pool: its first use forks, which would look like a stall.
    await asyncio.get_running_loop().run_in_executor(_state["processes"], _spin, 1)
    folder = tempfile.mkdtemp(prefix="advisor-app-")
    path = os.path.join(folder, "db.sqlite")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO items (name) VALUES (?)", [(f"item-{i}",) for i in range(500)])
    _state["db"] = await aiosqlite.connect(path)
    _state["lock"] = asyncio.Lock()


@app.on_event("shutdown")
async def shutdown():
    await _state["db"].close()
    _state["threads"].shutdown(wait=False)
    _state["processes"].shutdown(wait=False)


def _who(**extra):
    return {"pid": os.getpid(), **extra}


@app.get("/health")
async def health():
    return _who()


@app.get("/cpu/loop")
async def cpu_loop(ms: float = LOOP_MS):
    _spin(ms)
    return _who()


@app.get("/cpu/gil-thread")
async def cpu_gil_thread(n: int = FACTORIAL_N):
    bits = await asyncio.get_running_loop().run_in_executor(_state["threads"], _factorial_bits, n)
    return _who(bits=bits)


@app.get("/cpu/nogil-thread")
async def cpu_nogil_thread():
    digest = await asyncio.get_running_loop().run_in_executor(_state["threads"], _sha, BIG)
    return _who(digest=digest[:16])


@app.get("/cpu/process")
async def cpu_process(ms: float = 3):
    await asyncio.get_running_loop().run_in_executor(_state["processes"], _spin, ms)
    return _who()


@app.get("/sync/sleep")
def sync_sleep():
    time.sleep(SLEEP_S)
    return _who()


@app.get("/io/sleep")
async def io_sleep():
    await asyncio.sleep(SLEEP_S)
    return _who()


@app.get("/db")
async def db_query(item: int = 7):
    async with _state["db"].execute("SELECT id, name FROM items WHERE id = ?", (item,)) as cur:
        row = await cur.fetchone()
    async with _state["db"].execute("SELECT COUNT(*) FROM items WHERE name LIKE 'item-1%'") as cur:
        (count,) = await cur.fetchone()
    return _who(row=row[1], count=count)


@app.get("/lock")
async def locked():
    async with _state["lock"]:
        await asyncio.sleep(0.01)
    return _who()


@app.post("/upload")
async def upload(file: UploadFile = File(...)):
    data = await file.read()
    return _who(size=len(data))
