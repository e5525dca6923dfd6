"""Hot reload: SIGHUP, POST /reload and a change of the file (including a Kubernetes-style
`..data` symlink swap) all apply a valid config to new requests, keep the old one on errors, and
never fail a request in flight."""
import json
import os
import signal
import threading
import time

from harness import http_request, proxy_config, wait_until

ADMIN = {"listen": "127.0.0.1:0"}


def config_with(up, max_in_flight, max_queue=200, extra_route=False):
    routes = [{"name": "api", "match": {"prefix": "/"}, "upstream": "app",
               "limits": {"max_in_flight": max_in_flight, "max_queue": max_queue,
                          "queue_timeout": "10s"}}]
    if extra_route:
        routes.insert(0, {"name": "extra", "match": {"prefix": "/extra/"}, "upstream": "app"})
    return proxy_config({"app": {"endpoints": [up.address]}}, routes, admin=ADMIN)


def admin_config(proxy):
    return json.loads(http_request(proxy.admin_port, "GET", "/config").body)


def route_names(proxy):
    return [r["name"] for r in admin_config(proxy)["routes"]]


def post_reload(proxy):
    r = http_request(proxy.admin_port, "POST", "/reload")
    return r.status, json.loads(r.body)


def test_sighup_applies_a_valid_config(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(config_with(up, 5))
    proxy.write_config(config_with(up, 7, extra_route=True))
    proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: route_names(proxy) == ["extra", "api"], 3, desc="new routes live")
    assert admin_config(proxy)["routes"][1]["limits"]["max_in_flight"] == 7
    assert http_request(proxy.port, "GET", "/extra/echo").status == 200


def test_post_reload_with_errors_answers_400_and_keeps_the_old_config(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(config_with(up, 5))
    before = admin_config(proxy)
    proxy.write_config("listen: \"127.0.0.1:0\"\nadmin: {listen: \"127.0.0.1:0\"}\n"
                       "routes:\n  - name: x\n    match: {prefix: /}\n    upstream: nope\n"
                       "    bogus: 1\n")
    status, body = post_reload(proxy)
    assert status == 400, body
    assert body["ok"] is False
    assert len(body["errors"]) == 2, body  # the dangling upstream and the unknown key
    assert all(e.startswith(proxy.config_path + ":") for e in body["errors"]), body
    assert any(":7:" in e and "bogus" in e for e in body["errors"]), body
    assert admin_config(proxy) == before
    assert http_request(proxy.port, "GET", "/echo").status == 200
    # The line is logged before the answer is sent, but read from the pipe by another thread.
    wait_until(lambda: any("reload" in l and "rejected" in l for l in proxy.stderr_lines), 5,
               desc="the rejected reload in the log")


def test_post_reload_reports_keys_that_need_a_restart(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(config_with(up, 5))
    text = config_with(up, 6).replace('listen: "127.0.0.1:0"', 'listen: "127.0.0.1:1"', 1)
    proxy.write_config(text)
    status, body = post_reload(proxy)
    assert status == 200 and body["ok"] and body["changed"], body
    assert body["restart_required"] == ["listen"], body
    assert http_request(proxy.port, "GET", "/echo").status == 200  # still on the old port


def test_file_change_is_picked_up_without_a_signal(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(config_with(up, 5))
    proxy.write_config(config_with(up, 5, extra_route=True))
    wait_until(lambda: route_names(proxy) == ["extra", "api"], 3, interval=0.05,
               desc="file change reloaded")


def test_kubernetes_configmap_symlink_swap_is_picked_up(procs):
    up = procs.upstream("app")
    base = procs.workdir
    cm = os.path.join(base, "cm")
    os.makedirs(os.path.join(cm, "..2026_v1"))
    with open(os.path.join(cm, "..2026_v1", "loopguard.yaml"), "w") as f:
        f.write(config_with(up, 5))
    os.symlink("..2026_v1", os.path.join(cm, "..data"))
    os.symlink("..data/loopguard.yaml", os.path.join(cm, "loopguard.yaml"))
    from harness import Proxy  # a proxy whose --config is the ConfigMap-style path
    proxy = procs.proxy(config_with(up, 5))
    proxy.stop()
    p = Proxy(base, "", name="cmproxy")
    p.config_path = os.path.join(cm, "loopguard.yaml")
    p.write_config = lambda text=None: None
    procs.proxies.append(p)
    p.start()
    assert route_names(p) == ["api"]
    # What the kubelet does: write a new timestamped dir, then swap ..data atomically.
    os.makedirs(os.path.join(cm, "..2026_v2"))
    with open(os.path.join(cm, "..2026_v2", "loopguard.yaml"), "w") as f:
        f.write(config_with(up, 5, extra_route=True))
    os.symlink("..2026_v2", os.path.join(cm, "..data_tmp"))
    os.rename(os.path.join(cm, "..data_tmp"), os.path.join(cm, "..data"))
    wait_until(lambda: route_names(p) == ["extra", "api"], 3, interval=0.05,
               desc="ConfigMap swap reloaded")


def test_ten_reloads_under_load_with_changing_limits_fail_no_request(procs):
    up = procs.upstream("app")
    proxy = procs.proxy(config_with(up, 4))
    results = []
    stop = threading.Event()

    def client(i):
        n = 0
        while not stop.is_set():
            try:
                r = http_request(proxy.port, "GET", f"/delay?ms=15&c={i}&n={n}", timeout=15)
                results.append(r.status)
            except OSError as e:
                results.append(repr(e))
            n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    try:
        for k in range(10):
            time.sleep(0.25)  # the pace of the reloads under load, not a wait for an event
            proxy.write_config(config_with(up, [1, 3, 8, 2, 16][k % 5], extra_route=k % 2 == 0))
            status, body = post_reload(proxy)
            assert status == 200 and body["ok"], body
        time.sleep(0.25)  # traffic on the last config too
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    failed = [r for r in results if r != 200]
    assert len(results) > 100, len(results)
    assert failed == [], failed[:10]
    # The route's counters survived the reloads.
    metrics = http_request(proxy.admin_port, "GET", "/metrics").body.decode()
    line = [l for l in metrics.splitlines()
            if l.startswith('loopguard_requests_total{route="api",code="200"}')][0]
    assert int(float(line.split()[-1])) == len(results)
