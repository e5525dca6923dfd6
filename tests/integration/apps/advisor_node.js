// A Node.js app with the classic pair: crypto.pbkdf2Sync runs on the event loop (blocks it),
// crypto.pbkdf2 runs on libuv's thread pool (the loop only waits). Plus a timer-based I/O route.
// Run: NODE_PATH=/usr/share/nodejs node advisor_node.js PORT   (prints "listening PORT")
'use strict';
const crypto = require('crypto');
const express = require('express');

const ITERATIONS = parseInt(process.env.ADVISOR_PBKDF2_ITERATIONS || '60000', 10);
const app = express();

app.get('/health', (req, res) => res.json({ pid: process.pid }));
app.get('/pbkdf2-sync', (req, res) => {
  const key = crypto.pbkdf2Sync('secret', 'salt', ITERATIONS, 32, 'sha256');
  res.json({ pid: process.pid, key: key.toString('hex').slice(0, 8) });
});
app.get('/pbkdf2-async', (req, res) => {
  crypto.pbkdf2('secret', 'salt', ITERATIONS, 32, 'sha256', (err, key) => {
    if (err) return res.status(500).json({ error: String(err) });
    res.json({ pid: process.pid, key: key.toString('hex').slice(0, 8) });
  });
});
app.get('/io', (req, res) => setTimeout(() => res.json({ pid: process.pid }), 20));

const server = app.listen(parseInt(process.argv[2] || '0', 10), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
server.keepAliveTimeout = 65000;
process.on('SIGTERM', () => server.close(() => process.exit(0)));
