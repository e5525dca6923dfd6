#include "proxy/admin/status_page.h"

namespace loopguard::admin {

// Rendering rules, so sections added later show up without a change here:
//   - known sections (loopguard, routes, upstreams, pools) have their own renderers in
//     `renderers`; a feature may add one there for its section;
//   - any other section is rendered by `renderGeneric`: a list of objects as a table (one
//     column per key), an object as key/value rows (nested values recursively), a long or
//     multi-line string as a <pre> block.
// Every value from the document goes through esc() before it reaches innerHTML.
// Elements the integration test reads carry data-* attributes (data-route, data-field,
// data-pool, data-pid, data-section) rather than relying on layout.
const std::string_view kStatusPageHtml = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>loopguard status</title>
<link rel="icon" href="data:,">
<style>
:root { --bg:#f6f7f9; --fg:#1d2330; --muted:#667085; --card:#fff; --line:#e3e6eb;
        --ok:#1a7f37; --warn:#b35900; --bad:#c62828; --accent:#2f5fd0; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#14171c; --fg:#e6e8eb; --muted:#98a2b3; --card:#1d2128; --line:#2c323c;
          --ok:#4cc26a; --warn:#f0a23b; --bad:#ff6b6b; --accent:#7aa2ff; } }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       background:var(--bg); color:var(--fg); }
header { position:sticky; top:0; z-index:1; background:var(--card); border-bottom:1px solid var(--line);
         padding:8px 16px; display:flex; flex-wrap:wrap; gap:4px 18px; align-items:baseline; }
header h1 { font-size:18px; margin:0 8px 0 0; }
header .kv { color:var(--muted); white-space:nowrap; }
header .kv b { color:var(--fg); font-weight:600; }
#live { font-weight:600; }
#live.ok { color:var(--ok); } #live.stale { color:var(--bad); }
main { padding:12px 16px 32px; max-width:1400px; margin:0 auto; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; margin:0 0 14px;
          padding:10px 12px; }
section h2 { font-size:15px; margin:2px 0 8px; }
section h3 { font-size:14px; margin:10px 0 6px; }
.sub { color:var(--muted); font-weight:normal; font-size:13px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:12px; white-space:nowrap; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr:last-child td { border-bottom:none; }
.pill { display:inline-block; padding:0 7px; border-radius:9px; font-size:12px; font-weight:600;
        background:var(--line); }
.st-ready { color:var(--ok); } .st-busy { color:var(--accent); } .st-starting, .st-restarting { color:var(--warn); }
.st-stopping, .st-exited { color:var(--muted); }
.bad { color:var(--bad); font-weight:600; } .warn { color:var(--warn); } .muted { color:var(--muted); }
.bar { height:6px; background:var(--line); border-radius:3px; margin-top:3px; min-width:60px; }
.bar > span { display:block; height:6px; border-radius:3px; background:var(--accent); }
.bar > span.full { background:var(--bad); }
svg.spark { display:block; }
pre { background:var(--bg); border:1px solid var(--line); border-radius:6px; padding:8px; overflow:auto;
      max-height:420px; font-size:12px; }
#error { display:none; background:var(--bad); color:#fff; padding:6px 16px; }
.legend { font-size:12px; color:var(--muted); }
.legend i { display:inline-block; width:10px; height:3px; vertical-align:middle; margin:0 3px 0 8px; }
/* Phones: every table row becomes a card of label: value lines. */
@media (max-width: 720px) {
  header { padding:8px 10px; } main { padding:8px; }
  table, thead, tbody, tr, td { display:block; width:100%; }
  thead { display:none; }
  tr { border:1px solid var(--line); border-radius:6px; margin:0 0 8px; padding:4px 6px; }
  td { border:none; padding:2px 0; text-align:right !important; display:flex; justify-content:space-between; gap:12px; }
  td::before { content:attr(data-label); color:var(--muted); font-size:12px; text-align:left; }
  td > .v { text-align:right; }
}
</style>
</head>
<body>
<div id="error" role="alert"></div>
<header>
  <h1>loopguard <span class="sub" id="mode"></span></h1>
  <span class="kv"><span id="live" class="stale">connecting…</span></span>
  <span class="kv">pid <b data-field="pid"></b></span>
  <span class="kv">up <b data-field="uptime"></b></span>
  <span class="kv">loop lag <b data-field="loop_lag"></b></span>
  <span class="kv">CPU <b data-field="cpu"></b></span>
  <span class="kv">RSS <b data-field="rss"></b></span>
  <span class="kv">fds <b data-field="fds"></b></span>
  <span class="kv">clients <b data-field="clients"></b></span>
</header>
<main id="sections"></main>
<script>
"use strict";
const REFRESH_MS = 1500;
const main = document.getElementById("sections");
const prevCpu = new Map();   // key -> [cpu_seconds, time]: CPU % between two polls

function esc(v) {
  return String(v).replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
}
function num(v, digits) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return esc(v);
  if (digits !== undefined) return v.toFixed(digits);
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}
function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1000) return (v / 1000).toFixed(2) + " s";
  if (v >= 100) return v.toFixed(0) + " ms";
  if (v >= 10) return v.toFixed(1) + " ms";
  return v.toFixed(2) + " ms";
}
function bytes(v) {
  if (v === null || v === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : v) + " " + u[i];
}
function dur(s) {
  if (s === null || s === undefined) return "–";
  s = Math.floor(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + Math.floor(s % 3600 / 60) + "m";
  return Math.floor(s / 86400) + "d" + Math.floor(s % 86400 / 3600) + "h";
}
function cpuPercent(key, cpu, time) {
  if (cpu === null || cpu === undefined) return null;
  const prev = prevCpu.get(key);
  prevCpu.set(key, [cpu, time]);
  if (!prev || time <= prev[1]) return null;
  return Math.max(0, (cpu - prev[0]) / (time - prev[1]) * 100);
}
function td(label, html, cls, field) {
  // One child, so that on a phone (flex row: label, value) the value stays in one piece.
  return `<td data-label="${esc(label)}"${cls ? ` class="${cls}"` : ""}${field ? ` data-field="${field}"` : ""}><div class="v">${html}</div></td>`;
}
function table(headers, rows) {
  const th = headers.map(h => `<th${h.n ? ' class="n"' : ""}>${esc(h.t)}</th>`).join("");
  return `<table><thead><tr>${th}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

// A 60-second sparkline: p99 latency as a line, refusals as red bars from the bottom.
function sparkline(series) {
  const W = 150, H = 30, n = series.p99_ms.length;
  const maxLat = Math.max(1, ...series.p99_ms.filter(v => v !== null));
  const maxRef = Math.max(1, ...series.refusals);
  const x = i => (i + 0.5) * W / n;
  let bars = "";
  series.refusals.forEach((r, i) => {
    if (r > 0) {
      // At most 60 % of the height, faint: the latency line stays readable over them.
      const h = Math.max(2, r / maxRef * H * 0.6);
      bars += `<rect x="${(i * W / n).toFixed(1)}" y="${(H - h).toFixed(1)}" width="${(W / n).toFixed(1)}" height="${h.toFixed(1)}" fill="var(--bad)" opacity="0.45"/>`;
    }
  });
  const segs = [];
  let cur = [];
  series.p99_ms.forEach((v, i) => {
    if (v === null) { if (cur.length) segs.push(cur); cur = []; return; }
    cur.push(`${x(i).toFixed(1)},${(H - 1 - v / maxLat * (H - 4)).toFixed(1)}`);
  });
  if (cur.length) segs.push(cur);
  const lines = segs.map(s => s.length === 1
    ? `<circle cx="${s[0].split(",")[0]}" cy="${s[0].split(",")[1]}" r="1.5" fill="var(--accent)"/>`
    : `<polyline points="${s.join(" ")}" fill="none" stroke="var(--accent)" stroke-width="1.5"/>`).join("");
  return `<svg class="spark" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img"` +
    ` aria-label="p99 and refusals, last 60 s"><title>last 60 s: p99 up to ${esc(ms(maxLat))}, ` +
    `refusals up to ${maxRef}/s</title>${bars}${lines}</svg>`;
}

function renderLoopguard(s) {
  document.getElementById("mode").textContent = `${s.mode} ${s.version} · ${s.listen}`;
  const set = (f, v) => { const e = document.querySelector(`header [data-field="${f}"]`); if (e) e.textContent = v; };
  set("pid", s.pid);
  set("uptime", dur(s.uptime_s));
  set("loop_lag", ms(s.loop_lag_ms));
  const cpu = cpuPercent("self", s.cpu_seconds, s.time);
  set("cpu", cpu === null ? "…" : cpu.toFixed(0) + " %");
  set("rss", bytes(s.rss_bytes));
  set("fds", `${s.open_fds}${s.max_fds ? " / " + s.max_fds : ""}`);
  set("clients", s.client_connections);
  if (s.draining) document.getElementById("live").textContent = "draining";
  return null;  // header only
}

function renderRoutes(routes) {
  const rows = routes.map(r => {
    const cap = r.capacity;
    const fill = cap ? Math.min(100, r.in_flight / cap * 100) : 0;
    const limit = r.limit === null ? "∞" : r.limit;
    const capNote = cap !== null && cap !== r.limit ? ` <span class="muted">(cap ${cap})</span>` : "";
    const ref = r.refusals, refTotal = ref.queue_full + ref.queue_timeout + ref.no_workers;
    const refHtml = refTotal === 0 ? '<span class="muted">0</span>' :
      `<span class="bad">${refTotal}</span> <span class="muted">full ${ref.queue_full} · timeout ${ref.queue_timeout} · no workers ${ref.no_workers}</span>`;
    const codes = Object.entries(r.codes).map(([c, n]) =>
      `<span class="${c >= 500 ? "bad" : c >= 400 ? "warn" : ""}">${esc(c)}</span>&nbsp;${n}`).join(" ") || '<span class="muted">–</span>';
    const lm = r.last_minute;
    return `<tr data-route="${esc(r.name)}">` +
      td("route", `<b>${esc(r.name)}</b><div class="muted">${esc(r.match)}</div>`) +
      td("target", `${esc(r.target.kind)} <b>${esc(r.target.name)}</b>`) +
      td("in flight / limit", `<span data-field="in_flight">${r.in_flight}</span> / <span data-field="limit">${limit}</span>${capNote}` +
         (cap ? `<div class="bar"><span class="${fill >= 100 ? "full" : ""}" style="width:${fill}%"></span></div>` : ""), "n") +
      td("queue", `<span data-field="queue_depth">${r.queue_depth}</span> <span class="muted">/ ${r.max_queue}</span>`, "n") +
      td("req/s (1 min)", num(lm.rps, 1), "n", "rps") +
      td("p50 (1 min)", ms(lm.p50_ms), "n", "p50") +
      td("p99 (1 min)", ms(lm.p99_ms), "n", "p99") +
      td("refusals", refHtml, "", "refusals") +
      td("codes", codes, "", "codes") +
      td("last 60 s", sparkline(r.series), "spark-cell");
  });
  return `<h2>Routes <span class="sub">latency and rates over the last minute; sparkline: p99 <span class="legend"><i style="background:var(--accent)"></i></span>` +
    ` refusals/s <span class="legend"><i style="background:var(--bad)"></i></span></span></h2>` +
    table([{t:"route"},{t:"target"},{t:"in flight / limit",n:1},{t:"queue",n:1},{t:"req/s",n:1},{t:"p50",n:1},{t:"p99",n:1},
           {t:"refusals"},{t:"codes"},{t:"last 60 s"}], rows);
}

function renderUpstreams(ups) {
  if (!ups.length) return null;
  const rows = [];
  for (const u of ups) {
    const e = u.errors || {};
    const errs = (e.connect || 0) + (e.reset || 0) + (e.timeout || 0);
    const errHtml = errs ? `<span class="bad">${errs}</span> <span class="muted">connect ${e.connect} · reset ${e.reset} · timeout ${e.timeout}</span>` : '<span class="muted">0</span>';
    u.endpoints.forEach((ep, i) => rows.push(`<tr data-upstream="${esc(u.name)}" data-endpoint="${esc(ep.name)}">` +
      td("upstream", i === 0 ? `<b>${esc(u.name)}</b> <span class="muted">${esc(u.balance)}</span>` : "") +
      td("endpoint", esc(ep.name) + (ep.retired ? ' <span class="muted">(retired)</span>' : "")) +
      td("active", ep.active, "n", "active") + td("waiting", ep.waiting, "n", "waiting") +
      td("connections", `${ep.connections} <span class="muted">(${ep.idle} idle)</span>`, "n", "connections") +
      td("errors (upstream)", i === 0 ? errHtml : "", "", "errors")));
    if (!u.endpoints.length) rows.push(`<tr data-upstream="${esc(u.name)}">` + td("upstream", `<b>${esc(u.name)}</b>`) +
      td("endpoint", '<span class="warn">no endpoint resolved</span>') + td("active", "") + td("waiting", "") + td("connections", "") + td("errors", errHtml));
  }
  return "<h2>Upstreams</h2>" + table([{t:"upstream"},{t:"endpoint"},{t:"active",n:1},{t:"waiting",n:1},{t:"connections",n:1},{t:"errors"}], rows);
}

function renderPools(pools, doc) {
  if (!pools.length) return null;
  const time = doc.loopguard ? doc.loopguard.time : Date.now() / 1000;
  let html = "<h2>Pools</h2>";
  for (const p of pools) {
    const st = p.states;
    const restarts = Object.entries(p.restarts).map(([k, n]) => `${esc(k)} ${n}`).join(" · ") || "none";
    html += `<h3 data-pool="${esc(p.name)}">${esc(p.name)} <span class="sub">${p.workers_configured} workers × ${p.concurrency_per_worker} · ` +
      `capacity <span data-field="capacity">${p.capacity}</span> · ready ${st.ready} · busy ${st.busy} · starting ${st.starting} · stopping ${st.stopping}` +
      `${p.available ? "" : ' · <span class="bad">unavailable</span>'} · restarts: ${restarts}</span></h3>`;
    const workers = [...p.workers].sort((a, b) => a.index - b.index || (a.pid || 0) - (b.pid || 0));
    const rows = workers.map(w => {
      const cpu = cpuPercent(`${p.name}/${w.pid}`, w.cpu_seconds, time);
      const rs = Object.entries(w.restarts || {}).map(([k, n]) => `${esc(k)} ${n}`).join(" · ");
      return `<tr data-pool="${esc(p.name)}" data-index="${w.index}" data-pid="${w.pid === null ? "" : w.pid}">` +
        td("index", w.index, "n") +
        td("pid", w.pid === null ? "–" : w.pid, "n", "pid") +
        td("state", `<span class="pill st-${esc(w.state)}">${esc(w.state)}</span>${w.stop_reason ? ` <span class="muted">${esc(w.stop_reason)}</span>` : ""}`, "", "state") +
        td("in flight", w.in_flight, "n", "in_flight") +
        td("served", w.served, "n", "served") +
        td("RSS", bytes(w.rss_bytes), "n", "rss") +
        td("CPU", cpu === null ? (w.cpu_seconds === null ? "–" : "…") : cpu.toFixed(0) + " %", "n", "cpu") +
        td("CPU time", w.cpu_seconds === null ? "–" : w.cpu_seconds.toFixed(1) + " s", "n") +
        td("up", dur(w.uptime_s), "n") +
        td("restarts", w.restarts_total ? `<span class="warn">${w.restarts_total}</span> <span class="muted">${rs}</span>` : '<span class="muted">0</span>', "", "restarts") +
        td("last restart", w.last_restart ? `${esc(w.last_restart)} <span class="muted">${dur(w.last_restart_ago_s)} ago</span>` : '<span class="muted">–</span>', "", "last_restart");
    });
    html += table([{t:"#",n:1},{t:"pid",n:1},{t:"state"},{t:"in flight",n:1},{t:"served",n:1},{t:"RSS",n:1},{t:"CPU",n:1},
                   {t:"CPU time",n:1},{t:"up",n:1},{t:"restarts"},{t:"last restart"}], rows);
  }
  return html;
}

// Any section this page has no renderer for.
function renderGeneric(value, name) {
  const title = name ? `<h2>${esc(name)}</h2>` : "";
  return title + generic(value);
}
function generic(v) {
  if (v === null || v === undefined) return '<span class="muted">–</span>';
  if (typeof v === "string") return (v.length > 80 || v.includes("\n")) ? `<pre>${esc(v)}</pre>` : esc(v);
  if (typeof v !== "object") return num(v);
  if (Array.isArray(v)) {
    if (!v.length) return '<span class="muted">none</span>';
    if (v.every(x => x && typeof x === "object" && !Array.isArray(x))) {
      const keys = [...new Set(v.flatMap(Object.keys))];
      return table(keys.map(k => ({t:k})), v.map(x => "<tr>" + keys.map(k => td(k, generic(x[k]))).join("") + "</tr>"));
    }
    return v.map(generic).join(", ");
  }
  return table([{t:"key"},{t:"value"}], Object.entries(v).map(([k, x]) => "<tr>" + td("key", esc(k)) + td("value", generic(x)) + "</tr>"));
}

// A feature that wants its own look for its section adds a renderer here: (value, doc) -> HTML.
const renderers = { loopguard: renderLoopguard, routes: renderRoutes, upstreams: renderUpstreams, pools: renderPools };

function render(doc) {
  const order = doc.sections || Object.keys(doc);
  for (const name of order) {
    const fn = renderers[name];
    const html = fn ? fn(doc[name], doc) : renderGeneric(doc[name], name);
    let el = main.querySelector(`section[data-section="${CSS.escape(name)}"]`);
    if (html === null) { if (el) el.remove(); continue; }
    if (!el) { el = document.createElement("section"); el.dataset.section = name; main.appendChild(el); }
    el.innerHTML = html;
  }
  // Keep the sections in the document's order.
  order.forEach(name => { const el = main.querySelector(`section[data-section="${CSS.escape(name)}"]`); if (el) main.appendChild(el); });
}

let failures = 0;
async function poll() {
  const live = document.getElementById("live"), err = document.getElementById("error");
  try {
    const res = await fetch("status", {cache: "no-store"});
    if (!res.ok) throw new Error(`GET /status: HTTP ${res.status}`);
    const doc = await res.json();
    render(doc);
    failures = 0;
    err.style.display = "none";
    live.className = "ok";
    if (!(doc.loopguard && doc.loopguard.draining)) live.textContent = "live · " + new Date().toLocaleTimeString();
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  } catch (e) {
    failures++;
    live.className = "stale";
    live.textContent = "stale";
    err.textContent = `cannot read /status (${failures}×): ${e.message}; showing the last data`;
    err.style.display = "block";
  }
  setTimeout(poll, REFRESH_MS);
}
poll();
</script>
</body>
</html>
)html";

}  // namespace loopguard::admin
