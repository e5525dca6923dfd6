// An Express app as a loopguard pool worker, configured the way Node apps usually are: it
// listens on $PORT (loopguard's {port}, given through the pool's env) or, with $SOCKET_PATH, on
// a unix socket ({socket}). Debian's node-express: run with NODE_PATH=/usr/share/nodejs.
//
//   GET /healthz        200 "ok"            (the pool's ready probe)
//   GET /cpu/fib?n=N    fib(N) computed on this worker's own event loop, with the pid
//   GET /whoami         {"pid", "index"}    (LOOPGUARD_WORKER_INDEX)
"use strict";
const express = require("express");

const app = express();
const index = process.env.LOOPGUARD_WORKER_INDEX;

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

app.get("/healthz", (req, res) => res.send("ok"));
app.get("/cpu/fib", (req, res) => {
  const n = Math.min(parseInt(req.query.n || "20", 10), 35);
  res.json({ n, fib: fib(n), pid: process.pid, index });
});
app.get("/whoami", (req, res) => res.json({ pid: process.pid, index }));

const where = process.env.SOCKET_PATH || Number(process.env.PORT);
const server = app.listen(where, process.env.SOCKET_PATH ? undefined : "127.0.0.1", () => {
  console.log(`worker ${index} (pid ${process.pid}) listening on ${where}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
