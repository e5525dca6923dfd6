"""The status page (GET / on the admin port) and the document it renders (GET /status), in a real
browser: loopguard runs a pool of two test workers and an upstream route under live traffic (with
refusals and a crashed worker), headless Chromium loads the page over the DevTools protocol,
waits for the live data, and the DOM must show the routes, workers and numbers /status reports.

Screenshots go to the test's temporary folder; with LOOPGUARD_SCREENSHOT_DIR=DIR they are written
to DIR instead (how docs/images/status-page*.png were made; LOOPGUARD_SCREENSHOT_TRAFFIC_S=N runs
the traffic N seconds first, for fuller sparklines).
"""
import json
import os
import re
import struct
import time

import pytest

import browser
from harness import http_request, wait_until
from load_support import mixed_config, mixed_traffic
from offload_support import wait_ready

pytestmark = pytest.mark.skipif(not browser.available(), reason="needs /usr/bin/chromium")


def admin_get(proxy, path, method="GET"):
    r = http_request(proxy.admin_port, method, path)
    return r.status, r.header("Content-Type"), r.body


def status(proxy):
    code, ctype, body = admin_get(proxy, "/status")
    assert code == 200 and ctype == "application/json", (code, ctype, body[:200])
    return json.loads(body)


@pytest.fixture(scope="module")
def setup(module_procs):
    upstream = module_procs.upstream("app")
    proxy = module_procs.proxy(mixed_config(upstream))
    wait_ready(proxy, 2)
    # One crash, so a worker slot has a restart with its reason.
    r = http_request(proxy.target, "GET", "/cpu/crash?ms=0")
    assert r.status == 502
    wait_until(lambda: status(proxy)["pools"][0]["states"]["ready"] == 2, 15, 0.05,
               desc="the crashed worker replaced")
    assert http_request(proxy.target, "GET", "/nowhere").status == 404  # unrouted
    traffic = mixed_traffic(proxy.port)
    wait_until(lambda: (lambda s: s["routes"][0]["refusals"]["queue_full"] > 0 and
                        s["routes"][1]["requests_total"] > 20)(status(proxy)), 20, 0.1,
               desc="refusals on the pool route and traffic on the upstream route")
    extra = float(os.environ.get("LOOPGUARD_SCREENSHOT_TRAFFIC_S", "0"))
    if extra:
        time.sleep(extra)  # only when making the README's screenshots: fuller sparklines
    os.makedirs(module_procs.path("chromium"))
    chromium = browser.Chromium(module_procs.path("chromium")).start()
    module_procs.on_cleanup(chromium.stop)
    module_procs.on_cleanup(traffic.stop)
    yield {"proxy": proxy, "traffic": traffic, "browser": chromium, "upstream": upstream}


def screenshot_path(setup, name):
    folder = os.environ.get("LOOPGUARD_SCREENSHOT_DIR") or setup["browser"].workdir
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


# ---- /status -------------------------------------------------------------------------------------
def test_status_document_has_every_section(setup):
    s = status(setup["proxy"])
    assert s["sections"] == ["loopguard", "routes", "upstreams", "pools", "advice"]
    lg = s["loopguard"]
    assert lg["mode"] == "proxy" and lg["pid"] == setup["proxy"].pid
    assert lg["rss_bytes"] > 1 << 20 and lg["open_fds"] > 3 and lg["max_fds"] >= lg["open_fds"]
    assert lg["unrouted"] == {"404": 1}
    assert 0 <= lg["uptime_s"] < 600
    cpu, api = s["routes"]
    assert (cpu["name"], cpu["target"], cpu["limit"], cpu["capacity"], cpu["max_queue"]) == \
        ("cpu", {"kind": "pool", "name": "cpu"}, 2, 2, 1)
    assert cpu["refusals"]["queue_full"] > 0 and cpu["codes"]["200"] > 0 and cpu["codes"]["502"] == 1
    assert cpu["requests_total"] == sum(cpu["codes"].values())
    # Latency of the last minute: the pool route sleeps 60 ms per request (refusals are fast).
    assert 55 <= cpu["last_minute"]["p99_ms"] <= 2000, cpu["last_minute"]
    assert len(cpu["series"]["p99_ms"]) == 60 and sum(cpu["series"]["refusals"]) > 0
    assert cpu["demand_seconds_total"] > 0
    assert api["limit"] == 50 and api["target"] == {"kind": "upstream", "name": "app"}
    assert 4 <= api["last_minute"]["p50_ms"] <= 1000, api["last_minute"]
    (up,) = s["upstreams"]
    assert up["name"] == "app" and up["endpoints"][0]["name"] == setup["upstream"].address
    (pool,) = s["pools"]
    assert pool["workers_configured"] == 2 and pool["concurrency_per_worker"] == 1
    assert pool["restarts"] == {"crash": 1}
    live = [w for w in pool["workers"] if w["state"] in ("ready", "busy")]
    assert len(live) == 2
    for w in live:
        assert w["pid"] > 0 and w["rss_bytes"] > 1 << 20 and w["cpu_seconds"] is not None
    crashed = [w for w in pool["workers"] if w["restarts_total"]]
    assert crashed and crashed[0]["last_restart"] == "crash: exit code 3", crashed
    # The loop-block advisor's verdicts (pool routes are outside the app's loop: not observed).
    advice = s["advice"]
    assert advice["enabled"] is True and advice["observed_requests"] > 20, advice
    rows = {(e["route"], e["method"], e["path"]): e for e in advice["endpoints"]}
    assert set(rows) == {("api", "GET", "/api/delay")}, rows
    assert rows[("api", "GET", "/api/delay")]["verdict"] in ("ok", "not_enough_data"), rows


def test_status_and_page_answer_get_only(setup):
    proxy = setup["proxy"]
    code, ctype, body = admin_get(proxy, "/")
    assert code == 200 and ctype.startswith("text/html")
    # Self-contained: no script, style, font or image from anywhere else.
    refs = re.findall(rb"<(?:script|link|img|iframe)[^>]+(?:src|href)=\"([^\"]*)\"", body)
    assert all(ref.startswith(b"data:") for ref in refs), f"external resources: {refs}"
    assert b"@import" not in body and b"url(" not in body
    for method in ("POST", "PUT", "DELETE"):
        assert admin_get(proxy, "/status", method)[0] == 405
        assert admin_get(proxy, "/", method)[0] == 405


# ---- the page, in Chromium -----------------------------------------------------------------------
def open_page(setup, width=1280, height=900, mobile=False):
    page = setup["browser"].new_page()
    page.call("Network.enable")
    page.set_viewport(width, height, mobile=mobile, scale=2 if mobile else 1)
    page.navigate(f"http://127.0.0.1:{setup['proxy'].admin_port}/")
    page.wait_for("Number(document.body.dataset.updates || 0) >= 2", 20, "two live updates")
    return page


DOM_READ = r"""(() => {
  const text = (root, sel) => { const e = root.querySelector(sel); return e ? e.textContent.trim() : null; };
  const routes = {};
  for (const tr of document.querySelectorAll("section[data-section=routes] tr[data-route]")) {
    routes[tr.dataset.route] = Object.fromEntries(["in_flight", "limit", "queue_depth", "p50", "p99",
      "refusals", "codes"].map(f => [f, text(tr, `[data-field=${f}]`)]));
    routes[tr.dataset.route].spark = !!tr.querySelector("svg.spark polyline, svg.spark circle");
  }
  const workers = {};
  for (const tr of document.querySelectorAll("section[data-section=pools] tr[data-pid]")) {
    workers[tr.dataset.pid] = Object.fromEntries(["state", "served", "in_flight", "rss", "cpu",
      "restarts", "last_restart"].map(f => [f, text(tr, `[data-field=${f}]`)]));
  }
  const endpoints = [...document.querySelectorAll("section[data-section=upstreams] tr[data-endpoint]")]
    .map(tr => tr.dataset.endpoint);
  return {routes, workers, endpoints, pid: text(document, "header [data-field=pid]"),
          live: text(document, "#live"), updates: Number(document.body.dataset.updates)};
})()"""


def fmt_ms(v):
    """The page's ms() formatting, for comparing p50/p99 cells."""
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    if v >= 100:
        return f"{v:.0f} ms"
    if v >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def test_page_shows_what_status_reports(setup):
    proxy = setup["proxy"]
    page = open_page(setup)
    live = page.evaluate(DOM_READ)
    assert set(live["routes"]) == {"cpu", "api"}, live
    assert all(r["spark"] for r in live["routes"].values()), "a sparkline per route"
    # Save the screenshot while the traffic runs (the README's picture).
    bottom = page.evaluate("Math.ceil(document.getElementById('sections').getBoundingClientRect().bottom)")
    data = page.screenshot(screenshot_path(setup, "status-page.png"), height=bottom)
    w, h = png_size(data)
    assert w == 1280 and h == bottom > 400
    # Then stop the traffic, so /status and the page can be compared number for number.
    setup["traffic"].stop()
    wait_until(lambda: all(r["in_flight"] == 0 and r["queue_depth"] == 0
                           for r in status(proxy)["routes"]), 10, 0.05, desc="the routes idle")
    seen = page.evaluate("Number(document.body.dataset.updates)")
    page.wait_for(f"Number(document.body.dataset.updates) >= {seen + 2}", 10, "two more updates")
    dom = page.evaluate(DOM_READ)
    s = status(proxy)
    assert dom["pid"] == str(s["loopguard"]["pid"])
    assert dom["live"].startswith("live")
    for r in s["routes"]:
        row = dom["routes"][r["name"]]
        assert row["in_flight"] == str(r["in_flight"]) == "0"
        assert row["queue_depth"] == str(r["queue_depth"])
        assert row["limit"] == str(r["limit"])
        assert row["p50"] == fmt_ms(r["last_minute"]["p50_ms"]), (row, r["last_minute"])
        assert row["p99"] == fmt_ms(r["last_minute"]["p99_ms"]), (row, r["last_minute"])
        refusals = sum(r["refusals"].values())
        assert row["refusals"].split()[0] == str(refusals), row
        for code, n in r["codes"].items():
            assert f"{code}\xa0{n}" in row["codes"], (row["codes"], r["codes"])
    pool = s["pools"][0]
    for w in pool["workers"]:
        row = dom["workers"][str(w["pid"])]
        assert row["state"] == w["state"]
        assert row["served"] == str(w["served"]) and row["in_flight"] == str(w["in_flight"])
        assert row["rss"].endswith("MiB") and row["cpu"].endswith("%"), row
        if w["restarts_total"]:
            assert row["restarts"].startswith(str(w["restarts_total"]))
            assert w["last_restart"] in row["last_restart"]
    assert dom["endpoints"] == [e["name"] for u in s["upstreams"] for e in u["endpoints"]]
    # A section the page has no renderer for (the advisor's) is shown generically.
    advice_text = page.evaluate("(document.querySelector('section[data-section=\"advice\"]') "
                                "|| {innerText: ''}).innerText")
    assert "/api/delay" in advice_text and s["advice"]["endpoints"][0]["verdict"] in advice_text, \
        advice_text
    # Nothing but the page itself and /status was requested: it works offline.
    urls = {p["request"]["url"] for m, p in page.events if m == "Network.requestWillBeSent"}
    base = f"http://127.0.0.1:{proxy.admin_port}/"
    assert urls == {base, base + "status"}, urls


def test_page_reads_well_on_a_phone(setup):
    page = open_page(setup, width=390, height=844, mobile=True)
    # No sideways scrolling: every table turned into cards that fit the screen.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than a phone screen"
    assert page.evaluate("getComputedStyle(document.querySelector('thead')).display") == "none"
    label = page.evaluate("getComputedStyle(document.querySelector('tr[data-route] td'), '::before')"
                          ".content")
    assert label == '"route"', label
    data = page.screenshot(screenshot_path(setup, "status-page-phone.png"))
    assert png_size(data)[0] == 390 * 2


def test_page_says_when_loopguard_is_gone(setup):
    page = open_page(setup)
    setup["proxy"].stop()
    page.wait_for("document.getElementById('live').textContent === 'stale'", 10, "the stale mark")
    banner = page.evaluate("document.getElementById('error').textContent")
    assert "cannot read /status" in banner and "last data" in banner
    # The last data stays on screen.
    assert page.evaluate("document.querySelectorAll('tr[data-route]').length") == 2
