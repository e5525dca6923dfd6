"""deploy/kubernetes/ and deploy/Dockerfile kept honest without a cluster.

- Every manifest validates against the Kubernetes API schemas (npm package kubernetes-models, run by
  tests/deploy/validate-manifests.mjs, which also rejects fields the schema does not define).
- Every loopguard config embedded in a ConfigMap passes `loopguard validate`.
- Manifests and configs agree: container ports vs `listen`/`admin.listen`/`offload.listen`, probes
  on the admin port, Services' targetPorts, the offload socket shared through an emptyDir, DNS
  upstreams naming the offload Service, the HPA's target, the termination budget
  (terminationGracePeriodSeconds > preStop sleeps + drains), the bundle shared by an init container.
- deploy/Dockerfile agrees with deploy/install-deps.sh, the binary's shared libraries and the
  image's default config.

Needs node (Node.js) and the npm packages of tests/deploy/node/ (installed here with `npm ci` when
missing); skipped with a reason when node is not installed. The image itself is built by the slower
tests/deploy/build-image.sh.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from harness import loopguard_bin

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
NODE_DIR = ROOT / "tests" / "deploy" / "node"
VALIDATOR = ROOT / "tests" / "deploy" / "validate-manifests.mjs"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
IMAGE_CONFIG = ROOT / "deploy" / "container" / "loopguard.yaml"
INSTALL_DEPS = ROOT / "deploy" / "install-deps.sh"
BUNDLE_DIR = "/opt/loopguard"      # where the bundle's binary expects to be (make-bundle.sh)
IMAGE_UID = 10001                  # USER of deploy/Dockerfile


# ---- node + the validator ------------------------------------------------------------------------
def _node():
    node = shutil.which("node")
    if not node:
        pytest.skip("node (Node.js) is not installed: the Kubernetes schema checks need it "
                    "(apt-get install nodejs, then npm ci --prefix tests/deploy/node)")
    if not _node_modules_match_the_lockfile():
        npm = shutil.which("npm")
        if not npm:
            pytest.skip("npm is not installed and tests/deploy/node/node_modules is missing")
        r = subprocess.run([npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            out = r.stdout + r.stderr
            unreachable = ("certificate", "ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT",
                           "ECONNRESET", "network")
            if any(word in out for word in unreachable):
                pytest.skip("the npm registry is unreachable from here, so the schema "
                            f"validator cannot be installed: {out.strip().splitlines()[0]}")
            pytest.fail(f"npm ci --prefix tests/deploy/node failed:\n{out}", pytrace=False)
    return node


def _node_modules_match_the_lockfile():
    """True when every package of package-lock.json is installed at its locked version."""
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    for key, meta in lock.get("packages", {}).items():
        if not key:
            continue                                  # the root project itself
        installed = NODE_DIR / key / "package.json"
        try:
            if json.loads(installed.read_text()).get("version") != meta.get("version"):
                return False
        except (OSError, ValueError):
            if not meta.get("optional"):
                return False
    return True


def run_validator(*args):
    return subprocess.run([_node(), str(VALIDATOR), *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    out = tmp_path_factory.mktemp("configs")
    r = run_validator("--json", "--extract-configs", out, K8S)
    if r.returncode != 0:
        pytest.fail(f"deploy/kubernetes/ does not validate:\n{r.stderr}", pytrace=False)
    return json.loads(r.stdout), out


@pytest.fixture(scope="module")
def docs(extracted):
    return extracted[0]


# ---- helpers over the parsed manifests ---------------------------------------------------------
def pattern_of(doc):
    """The folder under deploy/kubernetes/: "sidecar" | "scale-out" | "monitoring"."""
    return pathlib.Path(doc["file"]).relative_to("deploy/kubernetes").parts[0]


def is_alternative(doc):
    """In an autoscaling/ folder: one of several files of which a user applies exactly one."""
    return "autoscaling" in pathlib.Path(doc["file"]).parts


def ns_of(obj):
    return obj["metadata"].get("namespace")


def objects(docs, kind, pattern=None):
    return [d for d in docs if d["object"]["kind"] == kind
            and (pattern is None or pattern_of(d) == pattern)]


def parse_duration(text, default):
    if text is None:
        return default
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", str(text))
    assert m, f"bad duration {text!r}"
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_address(text):
    """'host:port' -> ('tcp', host, port); 'unix:/path' -> ('unix', path, None)."""
    if text.startswith("unix:"):
        return ("unix", text[len("unix:"):], None)
    host, _, port = text.rpartition(":")
    return ("tcp", host, int(port))


class Pod:
    """A workload's pod template, with the loopguard containers and their configs resolved."""

    def __init__(self, doc, docs):
        self.doc = doc
        self.obj = doc["object"]
        self.name = self.obj["metadata"]["name"]
        self.ns = ns_of(self.obj)
        self.pattern = pattern_of(doc)
        self.spec = self.obj["spec"]["template"]["spec"]
        self.labels = self.obj["spec"]["template"]["metadata"].get("labels", {})
        self.init = self.spec.get("initContainers", [])
        self.sidecars = [c for c in self.init if c.get("restartPolicy") == "Always"]
        self.plain_init = [c for c in self.init if c.get("restartPolicy") != "Always"]
        self.main = self.spec["containers"]
        self.running = self.sidecars + self.main         # containers that serve while the pod runs
        self.volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        self.loopguard = {}                               # container name -> (mode, config)
        for c in self.running:
            argv = c.get("command", []) + c.get("args", [])
            if argv and pathlib.PurePosixPath(argv[0]).name == "loopguard" and \
                    len(argv) > 1 and argv[1] in ("proxy", "offload"):
                assert "--config" in argv, f"{self.name}/{c['name']}: no --config"
                path = argv[argv.index("--config") + 1]
                self.loopguard[c["name"]] = (argv[1], self.config_for(c, path, docs))

    @property
    def apps(self):
        """The running containers that are not loopguard (the app itself)."""
        return [c for c in self.running if c["name"] not in self.loopguard]

    def where(self, c=None):
        return f"{self.doc['file']}: {self.name}" + (f"/{c['name']}" if c else "")

    def container(self, name):
        return next(c for c in self.init + self.main if c["name"] == name)

    def mount_of(self, c, path):
        """The volumeMount of container c holding path, and path relative to it."""
        best = None
        for m in c.get("volumeMounts", []):
            mp = m["mountPath"].rstrip("/")
            if path == mp or path.startswith(mp + "/"):
                if best is None or len(mp) > len(best[0]["mountPath"].rstrip("/")):
                    best = (m, path[len(mp):].lstrip("/"))
        return best

    def config_for(self, c, path, docs):
        found = self.mount_of(c, path)
        assert found, f"{self.where(c)}: --config {path} is on no volumeMount"
        mount, rel = found
        assert "subPath" not in mount, \
            f"{self.where(c)}: config mounted with subPath: ConfigMap updates would never reach it"
        assert mount.get("readOnly") is True, f"{self.where(c)}: config mount should be readOnly"
        vol = self.volumes[mount["name"]]
        assert "configMap" in vol, f"{self.where(c)}: --config {path} is not from a ConfigMap"
        key = rel
        for item in vol["configMap"].get("items", []) or []:
            if item["path"] == rel:
                key = item["key"]
        cms = [d for d in docs if d["object"]["kind"] == "ConfigMap"
               and d["object"]["metadata"]["name"] == vol["configMap"]["name"]
               and ns_of(d["object"]) == self.ns and pattern_of(d) == self.pattern]
        assert len(cms) == 1, f"{self.where(c)}: ConfigMap {vol['configMap']['name']} not found once"
        assert key in cms[0]["configs"], \
            f"{self.where(c)}: ConfigMap {vol['configMap']['name']} has no key {key}"
        return cms[0]["configs"][key]

    def port_number(self, c, port):
        """A probe's port: a number, or a name looked up in the same container (as the kubelet does)."""
        if isinstance(port, int):
            return port
        for p in c.get("ports", []):
            if p.get("name") == port:
                return p["containerPort"]
        raise AssertionError(f"{self.where(c)}: probe port {port!r} is not a port of this container")

    def container_ports(self, c):
        return {p["containerPort"] for p in c.get("ports", [])}

    def prestop_sleep(self, c):
        pre = (c.get("lifecycle") or {}).get("preStop")
        if not pre:
            return 0
        if "sleep" in pre:
            return pre["sleep"]["seconds"]
        cmd = pre.get("exec", {}).get("command", [])
        if len(cmd) == 2 and pathlib.PurePosixPath(cmd[0]).name == "sleep":
            return float(cmd[1])
        raise AssertionError(f"{self.where(c)}: cannot tell how long preStop {cmd} takes")


@pytest.fixture(scope="module")
def pods(docs):
    return [Pod(d, docs) for d in docs
            if d["object"]["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def loopguard_containers(pods, mode):
    for pod in pods:
        for name, (m, cfg) in pod.loopguard.items():
            if m == mode:
                yield pod, pod.container(name), cfg


# ---- schema validation ---------------------------------------------------------------------------
def test_every_manifest_validates_against_the_kubernetes_schemas(docs):
    kinds = {(pattern_of(d), d["object"]["kind"]) for d in docs}
    for want in [("sidecar", "ConfigMap"), ("sidecar", "Deployment"), ("sidecar", "Service"),
                 ("scale-out", "ConfigMap"), ("scale-out", "Deployment"), ("scale-out", "Service"),
                 ("scale-out", "HorizontalPodAutoscaler"), ("sidecar", "HorizontalPodAutoscaler"),
                 ("sidecar", "ScaledObject"), ("scale-out", "ScaledObject"),
                 ("sidecar", "PodMonitor"), ("scale-out", "PodMonitor"),
                 ("sidecar", "NetworkPolicy"), ("scale-out", "NetworkPolicy")]:
        assert want in kinds, f"deploy/kubernetes/{want[0]}/ has no {want[1]}"
    # Alternatives (autoscaling/) share names on purpose: applying one replaces another.
    names = [(d["object"]["kind"], ns_of(d["object"]), d["object"]["metadata"]["name"], pattern_of(d))
             for d in docs if not is_alternative(d)]
    assert len(names) == len(set(names)), "two objects with the same kind/namespace/name"


def test_the_validator_rejects_what_the_api_server_would(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""\
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: i
          readinesProbe: {httpGet: {path: /readyz, port: 9901}}
          ports: [{containerPort: "8080"}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: h}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: broken}
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}}]
---
apiVersion: v1
kind: Servise
metadata: {name: s}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: so}
spec:
  scaleTargetRef: {name: broken}
  fallback: {failureThreshold: 3, replica: 6}
  triggers:
    - type: prometheus
      metadata: {serverAddress: "http://p:9090", query: "up", threshold: 0.7}
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: pm}
spec:
  selector: {matchLabels: {a: b}}
  podMetricsEndpoints: [{port: admin, intervall: 15s}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data:
  proxy.yaml: |
    listen: [unclosed
""")
    r = run_validator(bad)
    assert r.returncode == 1, r.stderr
    for expected in ['unknown field "readinesProbe"', "containerPort must be integer",
                     "must have required property maxReplicas", "unknown apiVersion/kind v1/Servise",
                     "data.proxy.yaml: YAML",
                     # CRDs: KEDA's and prometheus-operator's schemas, and their unknown fields
                     "spec.fallback: unknown field \"replica\"", "/spec/fallback must have required property replicas",
                     "/spec/triggers/0/metadata/threshold must be string",
                     "spec.podMetricsEndpoints[0]: unknown field \"intervall\""]:
        assert expected in r.stderr, f"not reported: {expected}\n{r.stderr}"


def test_embedded_loopguard_configs_pass_validate(extracted):
    _, out = extracted
    # loopguard configs only: the monitoring/ ConfigMaps hold other programs' files.
    files = sorted(f for f in out.iterdir() if not f.name.startswith("monitoring--"))
    assert len(files) >= 4, f"expected the proxy and offload configs of both patterns, got {files}"
    for f in files:
        r = subprocess.run([loopguard_bin(), "validate", "--config", str(f)], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"{f.name}: loopguard validate failed:\n{r.stderr}"


# ---- ports, probes, mounts -----------------------------------------------------------------------
def test_each_pattern_has_its_containers(pods):
    by_pattern = {}
    for pod in pods:
        by_pattern.setdefault(pod.pattern, []).extend(m for m, _ in pod.loopguard.values())
    assert sorted(by_pattern.get("sidecar", [])) == ["offload", "proxy"]
    assert sorted(by_pattern.get("scale-out", [])) == ["offload", "proxy"]


def test_loopguard_ports_and_probes_match_the_configs(pods):
    for pod in pods:
        for name, (mode, cfg) in pod.loopguard.items():
            c = pod.container(name)
            ports = pod.container_ports(c)
            listens = []
            if mode == "proxy":
                listens.append(("listen", cfg["listen"]))
            else:
                listens.append(("offload.listen", cfg["offload"]["listen"]))
            for key, addr in listens:
                kind, host, port = parse_address(addr)
                if kind == "tcp":
                    assert port in ports, f"{pod.where(c)}: {key} port {port} is not a containerPort"
                    assert host in ("0.0.0.0", "::", ""), \
                        f"{pod.where(c)}: {key} {addr} is not reachable on the pod IP"
            assert "admin" in cfg and "listen" in cfg["admin"], f"{pod.where(c)}: no admin.listen"
            kind, host, admin_port = parse_address(cfg["admin"]["listen"])
            assert kind == "tcp" and host in ("0.0.0.0", "::"), \
                f"{pod.where(c)}: admin.listen {cfg['admin']['listen']}: the kubelet probes the pod IP"
            assert admin_port in ports, f"{pod.where(c)}: admin port {admin_port} is not a containerPort"
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                assert probe in c, f"{pod.where(c)}: no {probe}"
                get = c[probe].get("httpGet")
                assert get and get["path"] == path, f"{pod.where(c)}: {probe} should GET {path}"
                assert pod.port_number(c, get["port"]) == admin_port, \
                    f"{pod.where(c)}: {probe} is not on the admin port {admin_port}"


def test_every_probe_port_exists(pods):
    """A named probe port must be a port of the same container; a numbered one must be open in the pod."""
    for pod in pods:
        pod_ports = {p for c in pod.running for p in pod.container_ports(c)}
        for c in pod.running:
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                get = (c.get(probe) or {}).get("httpGet")
                if get:
                    assert pod.port_number(c, get["port"]) in pod_ports, \
                        f"{pod.where(c)}: {probe} port {get['port']} is not open in the pod"


def _service_targets(svc, pods):
    spec = svc["object"]["spec"]
    matching = [p for p in pods if p.ns == ns_of(svc["object"]) and p.pattern == pattern_of(svc)
                and all(p.labels.get(k) == v for k, v in spec["selector"].items())]
    assert len(matching) == 1, \
        f"{svc['file']}: Service {svc['object']['metadata']['name']} selects {len(matching)} workloads"
    pod = matching[0]
    result = []
    for port in spec["ports"]:
        target = port.get("targetPort", port["port"])
        owner = None
        for c in pod.running:
            for p in c.get("ports", []):
                if target in (p["containerPort"], p.get("name")):
                    owner = (c, p["containerPort"])
        assert owner, f"{svc['file']}: targetPort {target} is no containerPort of {pod.name}"
        c, number = owner
        if isinstance(target, str):
            assert c not in pod.sidecars, \
                f"{svc['file']}: named targetPort {target!r} on native sidecar {c['name']}: " \
                "Services resolve those only from Kubernetes 1.32 on; use the number"
        result.append((port, pod, c, number))
    return result


def test_services_target_loopguard(docs, pods):
    for svc in objects(docs, "Service"):
        for port, pod, c, number in _service_targets(svc, pods):
            assert c["name"] in pod.loopguard, \
                f"{svc['file']}: Service {svc['object']['metadata']['name']} bypasses loopguard " \
                f"(targets container {c['name']})"
            mode, cfg = pod.loopguard[c["name"]]
            listen = cfg["listen"] if mode == "proxy" else cfg["offload"]["listen"]
            assert parse_address(listen)[2] == number, \
                f"{svc['file']}: targetPort {number} is not the {mode}'s listen port ({listen})"


def test_app_containers_are_only_reachable_through_loopguard(pods):
    for pod, c, cfg in loopguard_containers(pods, "proxy"):
        for up in cfg.get("upstreams", {}).values():
            for ep in up["endpoints"]:
                kind, host, port = parse_address(ep)
                if kind == "tcp" and host in ("127.0.0.1", "localhost", "::1"):
                    for other in pod.apps:
                        assert port not in pod.container_ports(other), \
                            f"{pod.where(other)}: declares the app port {port} the proxy reaches on loopback"
                        cmd = " ".join(other.get("command", []) + other.get("args", []))
                        assert "0.0.0.0" not in cmd, \
                            f"{pod.where(other)}: the app should bind loopback, not 0.0.0.0"


def test_config_is_mounted_as_a_folder_for_hot_reload(pods):
    # Pod.config_for asserts it for every loopguard container (no subPath, readOnly, ConfigMap);
    # this test makes sure there is something to check.
    assert sum(len(p.loopguard) for p in pods) >= 4


# ---- the offload pool: socket, DNS, image, bundle ------------------------------------------------
def test_offload_socket_is_shared_through_an_emptydir(pods):
    checked = 0
    for pod, c, cfg in loopguard_containers(pods, "proxy"):
        for upname, up in cfg.get("upstreams", {}).items():
            for ep in up["endpoints"]:
                kind, path, _ = parse_address(ep)
                if kind != "unix":
                    continue
                mine = pod.mount_of(c, path)
                assert mine, f"{pod.where(c)}: upstream {upname} socket {path} is on no volume"
                vol = pod.volumes[mine[0]["name"]]
                assert "emptyDir" in vol, f"{pod.where(c)}: {path} is not in an emptyDir"
                servers = []
                for oname, (mode, ocfg) in pod.loopguard.items():
                    if mode != "offload":
                        continue
                    ok, opath, _ = parse_address(ocfg["offload"]["listen"])
                    oc = pod.container(oname)
                    theirs = pod.mount_of(oc, opath) if ok == "unix" else None
                    if theirs and theirs[0]["name"] == mine[0]["name"] and theirs[1] == mine[1]:
                        servers.append(oname)
                assert len(servers) == 1, \
                    f"{pod.where(c)}: upstream {upname} ({ep}): no offload container of the pod " \
                    f"listens on that socket in the same emptyDir ({mine[0]['name']}/{mine[1]})"
                checked += 1
    assert checked >= 1, "the sidecar pattern should reach its offload pool through a unix socket"


def test_dns_upstreams_name_the_offload_service(docs, pods):
    checked = 0
    for pod, c, cfg in loopguard_containers(pods, "proxy"):
        resolve = {}
        for upname, up in cfg.get("upstreams", {}).items():
            for ep in up["endpoints"]:
                kind, host, port = parse_address(ep)
                if kind != "tcp" or not host.endswith(".svc.cluster.local"):
                    continue
                svc_name, svc_ns = host.split(".")[:2]
                assert svc_ns == (pod.ns or "default"), \
                    f"{pod.where(c)}: {ep} is in namespace {svc_ns}, the manifests in {pod.ns}"
                svcs = [s for s in objects(docs, "Service", pod.pattern)
                        if s["object"]["metadata"]["name"] == svc_name and ns_of(s["object"]) == pod.ns]
                assert len(svcs) == 1, f"{pod.where(c)}: no Service {svc_name} for {ep}"
                svc = svcs[0]
                assert svc["object"]["spec"].get("clusterIP") == "None", \
                    f"{svc['file']}: {svc_name} should be headless, so loopguard sees every pod"
                targets = [t for t in _service_targets(svc, pods) if t[0]["port"] == port]
                assert targets, f"{pod.where(c)}: {ep}: Service {svc_name} has no port {port}"
                _, tpod, tc, number = targets[0]
                assert tc["name"] in tpod.loopguard and tpod.loopguard[tc["name"]][0] == "offload", \
                    f"{pod.where(c)}: {ep} does not lead to a `loopguard offload` container"
                listen = tpod.loopguard[tc["name"]][1]["offload"]["listen"]
                assert parse_address(listen)[2] == number, \
                    f"{svc['file']}: targetPort {number} != offload.listen {listen}"
                every = parse_duration(up.get("resolve_every"), 30)
                assert every <= 10, f"{pod.where(c)}: upstream {upname}: resolve_every {every}s is " \
                    "too slow to follow the HPA"
                resolve[tpod.name] = max(resolve.get(tpod.name, 0), every)
                checked += 1
        # The offload pods keep serving through their preStop sleep while proxies re-resolve.
        for tname, every in resolve.items():
            tpod = next(p for p in pods if p.name == tname and p.ns == pod.ns)
            for oname in tpod.loopguard:
                sleep = tpod.prestop_sleep(tpod.container(oname))
                assert sleep >= every, f"{tpod.where(tpod.container(oname))}: preStop sleep " \
                    f"{sleep}s < the proxies' resolve_every {every}s"
    assert checked >= 1, "the scale-out pattern should reach its offload pool by DNS"


def test_offload_pools_run_in_the_apps_image(pods):
    for pod, c, cfg in loopguard_containers(pods, "offload"):
        app_images = {a["image"] for p in pods if p.pattern == pod.pattern for a in p.apps}
        assert c["image"] in app_images, \
            f"{pod.where(c)}: the pool runs the app's code: use the app's image ({app_images})"
        assert cfg["offload"]["pool"] in cfg["pools"]


def test_bundle_is_installed_by_an_init_container(pods):
    checked = 0
    for pod in pods:
        for c in pod.running:
            argv = c.get("command", [])
            if not argv or not argv[0].startswith(BUNDLE_DIR + "/"):
                continue
            mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == BUNDLE_DIR), None)
            assert mount, f"{pod.where(c)}: runs {argv[0]} but mounts nothing at {BUNDLE_DIR}"
            assert mount.get("readOnly") is True, f"{pod.where(c)}: mount the bundle readOnly"
            assert "emptyDir" in pod.volumes[mount["name"]]
            installers = []
            for i in pod.plain_init:
                cmd = i.get("command", []) + i.get("args", [])
                if cmd and pathlib.PurePosixPath(cmd[0]).name == "install-loopguard":
                    dest = cmd[1]
                    im = pod.mount_of(i, dest)
                    if im and im[0]["name"] == mount["name"] and im[1] == "":
                        installers.append(i)
            assert installers, f"{pod.where(c)}: no plain init container runs install-loopguard " \
                f"into volume {mount['name']}"
            order = [x["name"] for x in pod.init]
            if c in pod.init:
                assert order.index(installers[0]["name"]) < order.index(c["name"]), \
                    f"{pod.where(c)}: starts before install-loopguard has filled {BUNDLE_DIR}"
            checked += 1
    assert checked >= 2, "both patterns run `loopguard offload` from the shared bundle"


def test_the_proxy_stops_before_the_app_and_the_pool_it_forwards_to(pods):
    """The kubelet stops main containers first, then native sidecars in reverse order. So the
    proxy is the main container and everything it forwards to (the app, an offload pool in the
    pod) is a native sidecar declared before it: on termination the proxy drains while they
    still run, and no request it accepted finds the app gone (502 connect failed)."""
    checked = 0
    for pod in pods:
        proxies = [n for n, (m, _) in pod.loopguard.items() if m == "proxy"]
        if not proxies or not pod.apps:
            continue                              # a loopguard-only pod (the scale-out pool)
        for name in proxies:
            c = pod.container(name)
            assert c in pod.main, f"{pod.where(c)}: the proxy should be the main container so " \
                "that it stops first"
            assert pod.prestop_sleep(c) >= 3, f"{pod.where(c)}: the proxy needs a preStop sleep " \
                "that outlasts the endpoint removal"
        others = pod.apps + [pod.container(n) for n, (m, _) in pod.loopguard.items() if m == "offload"]
        for c in others:
            assert c in pod.sidecars, f"{pod.where(c)}: should be a native sidecar (initContainers " \
                "with restartPolicy: Always) so that it outlives the proxy"
            assert pod.prestop_sleep(c) == 0, f"{pod.where(c)}: a preStop sleep here only delays " \
                "the pod's end (it stops after the proxy has drained)"
        assert len(pod.main) == len(proxies), f"{pod.where()}: only the proxy is a main container"
        checked += 1
    assert checked == 2, "both patterns have app pods with a proxy"


def test_scale_out_limits_are_sized_together(docs, pods):
    """The proxies together admit at most what the pool serves at its largest (app replicas x
    route max_in_flight <= HPA maxReplicas x workers x concurrency_per_worker), and an offload pod
    that is saturated meanwhile refuses fast (a queue of at most one round of work, waited in
    for seconds, not for the request timeout): overload is a fast 503, never a 504 after a
    second queue. The sidecar pattern's one proxy admits exactly its pool's capacity."""
    checked = 0
    for pod, c, cfg in loopguard_containers(pods, "proxy"):
        replicas = pod.obj["spec"].get("replicas", 1)
        for route in cfg.get("routes", []):
            up = cfg.get("upstreams", {}).get(route.get("upstream"))
            if not up:
                continue
            for ep in up["endpoints"]:
                kind, host, port = parse_address(ep)
                pool_pod = pool_cfg = None
                if kind == "unix":                  # the pod's own offload sidecar
                    for oname, (mode, ocfg) in pod.loopguard.items():
                        if mode == "offload" and parse_address(ocfg["offload"]["listen"])[1] == host:
                            pool_pod, pool_cfg = pod, ocfg
                elif host.endswith(".svc.cluster.local"):
                    svc = host.split(".")[0]
                    for p in pods:
                        for oname, (mode, ocfg) in p.loopguard.items():
                            if mode == "offload" and p.pattern == pod.pattern and \
                                    p.labels.get("app.kubernetes.io/name") == svc:
                                pool_pod, pool_cfg = p, ocfg
                if pool_cfg is None:
                    continue
                off = pool_cfg["offload"]
                pool = pool_cfg["pools"][off["pool"]]
                per_pod = pool.get("workers", 2) * pool.get("concurrency_per_worker", 1)
                limit = route["limits"]["max_in_flight"]
                route_timeout = parse_duration(route.get("timeout"), 0)
                request_timeout = parse_duration(pool.get("request_timeout"), 60)
                if pool_pod is pod:
                    assert limit == per_pod, f"{pod.where(c)}: route {route['name']} " \
                        f"max_in_flight {limit} != the pod's pool ({per_pod})"
                else:
                    # The autoscalers shipped as alternatives (autoscaling/: KEDA, HPA on
                    # demand, HPA on CPU) must agree on the pool's largest size.
                    maxima = {h["object"]["spec"]["maxReplicas"]
                              for h in objects(docs, "HorizontalPodAutoscaler", pod.pattern)
                              if h["object"]["spec"]["scaleTargetRef"]["name"] == pool_pod.name}
                    maxima |= {k["object"]["spec"]["maxReplicaCount"]
                               for k in objects(docs, "ScaledObject", pod.pattern)
                               if k["object"]["spec"]["scaleTargetRef"]["name"] == pool_pod.name}
                    assert len(maxima) == 1, f"the pool's autoscalers disagree on its size: {maxima}"
                    largest = maxima.pop() * per_pod
                    assert replicas * limit <= largest, \
                        f"{pod.where(c)}: {replicas} app pods x max_in_flight {limit} admit more " \
                        f"than the pool can ever serve ({largest}): the excess would queue twice"
                    assert replicas * limit >= largest // 2, \
                        f"{pod.where(c)}: the proxies can use only {replicas * limit} of the " \
                        f"{largest} workers the HPA may start"
                    assert off.get("max_queue", 1024) <= per_pod, \
                        f"{pool_pod.where()}: offload.max_queue should be at most one round of " \
                        f"work ({per_pod}), so a saturated pod refuses fast"
                    qt = parse_duration(off.get("queue_timeout"), request_timeout)
                    assert qt <= 5 and qt < route_timeout, \
                        f"{pool_pod.where()}: offload.queue_timeout {qt}s: a saturated pod " \
                        "should refuse within seconds, long before the route's timeout"
                checked += 1
    assert checked == 2, "both patterns route /cpu/ to an offload pool"


# ---- NetworkPolicy: the admin ports only to the scraper ---------------------------------------------
def _policies_for(docs, pod):
    out = []
    for d in objects(docs, "NetworkPolicy", pod.pattern):
        spec = d["object"]["spec"]
        if ns_of(d["object"]) != pod.ns or "Ingress" not in spec.get("policyTypes", ["Ingress"]):
            continue
        sel = spec["podSelector"].get("matchLabels", {})
        if all(pod.labels.get(k) == v for k, v in sel.items()):
            out.append(d)
    return out


def _rule_ports(rule, pod):
    """The container port numbers a rule opens (all of the pod's when it names none)."""
    all_ports = {p for c in pod.running for p in pod.container_ports(c)}
    if not rule.get("ports"):
        return all_ports
    out = set()
    for p in rule["ports"]:
        port = p.get("port")
        if isinstance(port, int):
            out.add(port)
        else:
            out |= {cp["containerPort"] for c in pod.running for cp in c.get("ports", [])
                    if cp.get("name") == port}
    return out


def _admits(rule, labels):
    """Whether a rule admits a pod with these labels in the same namespace (None: from anywhere)."""
    if not rule.get("from"):
        return True
    for peer in rule["from"]:
        if "ipBlock" in peer or "namespaceSelector" in peer:
            continue
        sel = peer.get("podSelector", {}).get("matchLabels", {})
        if all(labels.get(k) == v for k, v in sel.items()):
            return True
    return False


def test_network_policies_open_the_admin_ports_to_the_scraper_only(docs, pods):
    """The kubelet's probes need no rule (NetworkPolicy always admits a pod's own node); the
    admin ports (/metrics, and /config, /reload, /advice behind them) are open only to selected
    pods (the scraper), never to any source or an IP block; the Service ports stay reachable."""
    for pod in pods:
        if not pod.loopguard:
            continue
        policies = _policies_for(docs, pod)
        assert policies, f"{pod.where()}: no NetworkPolicy selects this pod"
        rules = [r for d in policies for r in d["object"]["spec"].get("ingress", [])]
        for name, (mode, cfg) in pod.loopguard.items():
            admin_port = parse_address(cfg["admin"]["listen"])[2]
            covering = [r for r in rules if admin_port in _rule_ports(r, pod)]
            assert covering, f"{pod.where(pod.container(name))}: admin port {admin_port} is " \
                "closed to the scraper"
            for r in covering:
                assert r.get("from"), f"{pod.where()}: admin port {admin_port} open to any source"
                for peer in r["from"]:
                    assert "podSelector" in peer and "ipBlock" not in peer, \
                        f"{pod.where()}: admin port {admin_port} open to {peer}"
                    assert peer["podSelector"].get("matchLabels"), \
                        f"{pod.where()}: admin port {admin_port} open to every pod"
        for svc in objects(docs, "Service", pod.pattern):
            for port, tpod, c, number in _service_targets(svc, pods):
                if tpod is not pod:
                    continue
                if svc["object"]["spec"].get("clusterIP") == "None":
                    # The pool's headless Service: its clients are the app's proxies.
                    clients = [p for p in pods if p is not pod and p.pattern == pod.pattern
                               and any(m == "proxy" for m, _ in p.loopguard.values())]
                    for client in clients:
                        assert any(number in _rule_ports(r, pod) and _admits(r, client.labels)
                                   for r in rules), \
                            f"{pod.where()}: port {number} closed to the proxies of {client.name}"
                    assert not any(number in _rule_ports(r, pod) and not r.get("from")
                                   for r in rules), f"{pod.where()}: pool port {number} open to all"
                else:
                    assert any(number in _rule_ports(r, pod) and not r.get("from") for r in rules), \
                        f"{pod.where()}: the Service port {number} is not open to its clients"


# ---- images: every one the manifests run is built by a Dockerfile here ---------------------------
DEMO_DOCKERFILE = ROOT / "deploy" / "container" / "demo-app.Dockerfile"
IMAGE_SOURCES = {"loopguard": DOCKERFILE, "demo-app": DEMO_DOCKERFILE}


def test_every_image_is_built_by_a_dockerfile_of_this_repository(pods):
    for pod in pods:
        for c in pod.init + pod.main:
            repo = c["image"].rsplit("/", 1)[-1].split(":")[0]
            assert repo in IMAGE_SOURCES, f"{pod.where(c)}: no Dockerfile here builds {c['image']}"
            assert IMAGE_SOURCES[repo].exists()


def test_demo_app_dockerfile_matches_the_manifests_and_install_deps(pods):
    text = DEMO_DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=\S*debian:bookworm", text, re.M)
    assert re.search(r"^USER 10001:10001$", text, re.M), "the manifests run as uid 10001"
    workdir = re.search(r"^WORKDIR (\S+)$", text, re.M).group(1)
    assert re.search(rf"^COPY deploy/examples/app\.py {re.escape(workdir)}/app\.py$", text, re.M)
    for pod in pods:
        for c in pod.init + pod.main:
            if "demo-app" in c["image"]:
                assert c.get("workingDir") == workdir, f"{pod.where(c)}: workingDir != {workdir}"
    # The demo's Python packages, as deploy/install-deps.sh installs them for the tests.
    m = re.search(r"demo_pkgs=\(\s*(.*?)\)", INSTALL_DEPS.read_text(), re.S)
    wanted = {p for p in m.group(1).split() if p.startswith("python3-")}
    installed = set(re.search(r"--no-install-recommends \\?\s*([^;]+);", text).group(1).split())
    assert wanted <= installed, f"demo-app.Dockerfile lacks {sorted(wanted - installed)}"


# ---- HPA, termination, security ------------------------------------------------------------------
def autoscalers(docs):
    return [d for d in docs if d["object"]["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]


def target_of(doc, pods):
    obj = doc["object"]
    ref = obj["spec"]["scaleTargetRef"]
    assert ref.get("apiVersion", "apps/v1") == "apps/v1" and ref.get("kind", "Deployment") == "Deployment"
    targets = [p for p in pods if p.name == ref["name"] and p.ns == ns_of(obj)
               and p.pattern == pattern_of(doc) and p.obj["kind"] == "Deployment"]
    assert len(targets) == 1, f"{doc['file']}: scaleTargetRef {ref['name']} is no Deployment here"
    return targets[0]


def hpa_name(doc):
    """The name of the HPA object an autoscaler file makes (KEDA: keda-hpa-<name> by default)."""
    obj = doc["object"]
    if obj["kind"] == "HorizontalPodAutoscaler":
        return obj["metadata"]["name"]
    cfg = obj["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
    return cfg.get("name", "keda-hpa-" + obj["metadata"]["name"])


def test_autoscalers_target_their_patterns_deployment(docs, pods):
    found = autoscalers(docs)
    assert found
    for a in found:
        pod = target_of(a, pods)
        modes = {m for m, _ in pod.loopguard.values()}
        if pod.pattern == "scale-out":
            assert modes == {"offload"}, f"{a['file']}: should scale the offload pool"
        else:
            assert "proxy" in modes, f"{a['file']}: should scale the pod with the proxy"
        assert is_alternative(a), f"{a['file']}: autoscalers live in autoscaling/, applied one at a time"
        spec = a["object"]["spec"]
        low = spec.get("minReplicas", spec.get("minReplicaCount", 1))
        high = spec.get("maxReplicas", spec.get("maxReplicaCount", 100))
        assert 2 <= low <= high, f"{a['file']}: at least 2 replicas (a rollout or a drain keeps one)"
        if "replicas" in pod.obj["spec"]:
            # Every `kubectl apply` would reset what the autoscaler set: the line must say so.
            text = (ROOT / pod.doc["file"]).read_text()
            assert re.search(r"^  replicas: \d+ +#.*delete this line when an autoscaler", text, re.M), \
                f"{pod.where()}: has spec.replicas and an autoscaler ({a['file']})"
        for m in spec.get("metrics", []):
            if m["type"] == "Resource" and m["resource"]["name"] == "cpu":
                assert m["resource"]["target"]["type"] == "Utilization"
                for c in pod.running:
                    assert (c.get("resources") or {}).get("requests", {}).get("cpu"), \
                        f"{pod.where(c)}: no CPU request: the HPA cannot compute utilization"


def test_autoscaling_alternatives_share_one_hpa(docs, pods):
    """The files of one autoscaling/ folder scale the same Deployment through an HPA of the same
    name, so applying one replaces another: never two HPAs on one Deployment. KEDA adopts an
    existing HPA of that name only with the transfer-hpa-ownership annotation."""
    folders = {}
    for a in autoscalers(docs):
        folders.setdefault(pathlib.Path(a["file"]).parent, []).append(a)
    assert set(map(str, folders)) == {"deploy/kubernetes/sidecar/autoscaling",
                                      "deploy/kubernetes/scale-out/autoscaling"}
    for folder, alts in folders.items():
        assert len(alts) >= 2, f"{folder}: one autoscaler is no alternative"
        assert len({target_of(a, pods).name for a in alts}) == 1, f"{folder}: different targets"
        assert len({hpa_name(a) for a in alts}) == 1, f"{folder}: HPA names differ"
        for a in alts:
            if a["object"]["kind"] == "ScaledObject":
                ann = a["object"]["metadata"].get("annotations", {})
                assert ann.get("scaledobject.keda.sh/transfer-hpa-ownership") == "true", a["file"]


def prom_triggers(doc):
    return [t for t in doc["object"]["spec"]["triggers"] if t["type"] == "prometheus"]


def test_keda_scales_on_demand_over_capacity_safely(docs):
    sos = objects(docs, "ScaledObject")
    assert {pattern_of(d) for d in sos} == {"sidecar", "scale-out"}
    for so in sos:
        spec = so["object"]["spec"]
        triggers = prom_triggers(so)
        assert [t["name"] for t in triggers] == ["demand", "demand-with-refusals"], so["file"]
        for t in triggers:
            md = t["metadata"]
            q = md["query"]
            # AverageValue: desired = ceil(value / threshold), the only type fallback works with.
            assert t.get("metricType") == "AverageValue", f"{so['file']}: {t['name']}"
            assert md["threshold"] == "0.7", f"{so['file']}: {t['name']}: target 70 % of capacity"
            # keda#3065: an empty result must be an error (then the fallback), not a zero.
            assert md.get("ignoreNullValues") == "false", f"{so['file']}: {t['name']}"
            # keda#5781: AverageValue divides by the replica count; the query must not as well.
            assert not re.search(r"\bcount\s*\(|\bavg\s*\(|kube_deployment", q), \
                f"{so['file']}: {t['name']}: the query divides by the number of pods"
            assert "loopguard_route_demand_seconds_total" in q and "loopguard_route_capacity" in q
            assert re.search(r"rate\(loopguard_route_demand_seconds_total\{[^}]*\}\[1m\]\)", q)
        assert "loopguard_route_rejected_total" in triggers[1]["metadata"]["query"]
        fb = spec["fallback"]
        assert fb["failureThreshold"] >= 1 and spec["minReplicaCount"] <= fb["replicas"] <= spec["maxReplicaCount"]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0, "scale up at once"
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
        assert spec.get("pollingInterval", 30) <= 30


def selector_of(query, metric):
    m = re.search(re.escape(metric) + r"\{([^}]*)\}", query)
    assert m, f"{metric} not in {query}"
    return dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))


def test_keda_queries_select_what_the_podmonitor_scrapes(docs, pods):
    """The labels a trigger selects on exist: namespace and container of a pod a PodMonitor
    scrapes, and a route of that container's loopguard config."""
    for so in objects(docs, "ScaledObject"):
        monitors = objects(docs, "PodMonitor", pattern_of(so))
        assert len(monitors) == 1
        mon = monitors[0]["object"]
        scraped = {}   # container name -> routes its loopguard serves
        for pod in pods:
            if pod.pattern != pattern_of(so) or pod.ns != ns_of(mon):
                continue
            sel = mon["spec"]["selector"]
            labels_ok = all(pod.labels.get(k) == v for k, v in sel.get("matchLabels", {}).items())
            for e in sel.get("matchExpressions", []):
                labels_ok &= e["operator"] == "In" and pod.labels.get(e["key"]) in e["values"]
            if not labels_ok:
                continue
            ports = {ep["port"] for ep in mon["spec"]["podMetricsEndpoints"]}
            for name, (mode, cfg) in pod.loopguard.items():
                c = pod.container(name)
                admin = parse_address(cfg["admin"]["listen"])[2]
                if any(p.get("name") in ports and p["containerPort"] == admin for p in c.get("ports", [])):
                    routes = [r["name"] for r in cfg.get("routes", [])] if mode == "proxy" else ["offload"]
                    scraped[name] = set(routes)
        for t in prom_triggers(so):
            q = t["metadata"]["query"]
            for metric in re.findall(r"(loopguard_\w+)\{", q):
                sel = selector_of(q, metric)
                # A namespace-less manifest (sidecar/) goes to the one it is applied to: "default" here.
                assert sel.get("namespace") == (ns_of(so["object"]) or "default"), \
                    f"{so['file']}: {metric} {sel}"
                assert sel.get("container") in scraped, \
                    f"{so['file']}: {metric}: container {sel.get('container')} is not scraped ({scraped})"
                assert sel.get("route") in scraped[sel["container"]], \
                    f"{so['file']}: {metric}: no route {sel.get('route')} in {sel['container']}'s config"


def adapter_rules(docs):
    cms = [d for d in docs if d["object"]["kind"] == "ConfigMap"
           and d["object"]["metadata"]["name"] == "prometheus-adapter"]
    assert len(cms) == 1
    return {r["name"]["as"]: r for r in cms[0]["configs"]["config.yaml"]["externalRules"]}


def normalise(q):
    return re.sub(r"\s+", "", q)


def test_hpa_alternative_uses_the_same_signal_as_keda(docs):
    """Each demand HPA's external metrics, rendered as prometheus-adapter renders them
    (<<.LabelMatchers>> = the HPA's namespace + its metric selector), are the KEDA triggers' queries
    of the same folder, in the same order, with the same target."""
    rules = adapter_rules(docs)
    for hpa in objects(docs, "HorizontalPodAutoscaler"):
        external = [m for m in hpa["object"]["spec"]["metrics"] if m["type"] == "External"]
        if not external:
            continue                                  # hpa-cpu.yaml
        keda = [d for d in objects(docs, "ScaledObject")
                if pathlib.Path(d["file"]).parent == pathlib.Path(hpa["file"]).parent]
        assert len(keda) == 1
        triggers = prom_triggers(keda[0])
        assert len(external) == len(triggers)
        for m, t in zip(external, triggers):
            rule = rules[m["external"]["metric"]["name"]]
            labels = {"namespace": ns_of(hpa["object"]) or "default",
                      **m["external"]["metric"].get("selector", {}).get("matchLabels", {})}
            matchers = ",".join(f'{k}="{v}"' for k, v in labels.items())
            rendered = rule["metricsQuery"].replace("<<.LabelMatchers>>", matchers)
            assert normalise(rendered) == normalise(t["metadata"]["query"]), \
                f"{hpa['file']}: {m['external']['metric']['name']} is not KEDA's {t['name']}"
            assert m["external"]["target"] == {"type": "AverageValue", "averageValue": "700m"}
            assert re.search(rule["name"]["matches"], "loopguard_route_demand_seconds_total")


def test_podmonitors_scrape_every_loopguard_admin_port(docs, pods):
    for pattern in ("sidecar", "scale-out"):
        (mon,) = objects(docs, "PodMonitor", pattern)
        ports = {ep["port"] for ep in mon["object"]["spec"]["podMetricsEndpoints"]}
        for ep in mon["object"]["spec"]["podMetricsEndpoints"]:
            assert ep["path"] == "/metrics"
        for pod in pods:
            if pod.pattern != pattern:
                continue
            for name, (mode, cfg) in pod.loopguard.items():
                c = pod.container(name)
                admin = parse_address(cfg["admin"]["listen"])[2]
                named = [p["name"] for p in c.get("ports", []) if p["containerPort"] == admin]
                assert named and named[0] in ports, \
                    f"{pod.where(c)}: admin port {admin} ({named}) is not scraped by {mon['file']}"


def test_alert_rules_wrap_into_a_valid_prometheusrule(tmp_path):
    """docs/observability.md's one-liner turns deploy/prometheus/loopguard-rules.yaml into a
    prometheus-operator PrometheusRule; the result validates against the CRD's schema."""
    rules = (ROOT / "deploy" / "prometheus" / "loopguard-rules.yaml").read_text()
    body = "".join(("  " + line if line.strip() else line) for line in rules.splitlines(True))
    out = tmp_path / "prometheusrule.yaml"
    out.write_text("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\n"
                   "metadata: {name: loopguard, namespace: monitoring}\nspec:\n" + body)
    r = run_validator(out)
    assert r.returncode == 0, r.stderr


def test_termination_grace_covers_prestop_and_drains(pods):
    for pod in pods:
        grace = pod.spec.get("terminationGracePeriodSeconds", 30)
        # Native sidecars stop one after another, after the main containers: the worst case is the
        # sum of every preStop sleep and every loopguard drain in the pod.
        budget = sum(pod.prestop_sleep(c) for c in pod.running)
        budget += sum(parse_duration(cfg.get("timeouts", {}).get("drain"), 30)
                      for _, cfg in pod.loopguard.values())
        assert grace > budget, f"{pod.where()}: terminationGracePeriodSeconds {grace} <= " \
            f"preStop sleeps + drains = {budget}"
        for name, (mode, cfg) in pod.loopguard.items():
            drain = parse_duration(cfg.get("timeouts", {}).get("drain"), 30)
            routes = [parse_duration(r.get("timeout"), 0) for r in cfg.get("routes", [])]
            if mode == "proxy" and routes:
                assert drain >= max(routes), f"{pod.where(pod.container(name))}: drain {drain}s is " \
                    f"shorter than the longest route timeout {max(routes)}s"


def test_pods_run_as_the_images_non_root_user(pods):
    for pod in pods:
        sc = pod.spec.get("securityContext", {})
        assert sc.get("runAsNonRoot") is True, f"{pod.where()}: runAsNonRoot"
        assert sc.get("runAsUser") == IMAGE_UID, f"{pod.where()}: runAsUser {IMAGE_UID} (the image's USER)"
        for c in pod.init + pod.main:
            csc = c.get("securityContext", {})
            assert csc.get("allowPrivilegeEscalation") is False, f"{pod.where(c)}"
            assert "ALL" in csc.get("capabilities", {}).get("drop", []), f"{pod.where(c)}"


# ---- deploy/Dockerfile ---------------------------------------------------------------------------
def _dockerfile():
    return DOCKERFILE.read_text()


def test_dockerfile_builds_with_the_packages_of_install_deps():
    text = _dockerfile()
    m = re.search(r"build_pkgs=\(\s*(.*?)\)", INSTALL_DEPS.read_text(), re.S)
    assert m, "deploy/install-deps.sh has no build_pkgs=(...)"
    wanted = set(m.group(1).split()) - {"git", "googletest", "libgtest-dev", "libgmock-dev"}
    build_stage = text.split(" AS bundle")[0]
    missing = sorted(p for p in wanted if not re.search(rf"(?<![\w.+-]){re.escape(p)}(?![\w.+-])",
                                                        build_stage))
    assert not missing, f"deploy/Dockerfile's build stage lacks {missing} (in install-deps.sh)"
    for p in ("googletest", "libgtest-dev", "libgmock-dev"):
        assert p in build_stage, f"RUN_UNIT_TESTS=1 needs {p}"


def test_dockerfile_shape():
    text = _dockerfile()
    assert re.search(r"^ARG BASE_IMAGE=\S*debian:bookworm", text, re.M), "FROM must be overridable"
    froms = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert [f[1] for f in froms] == ["build", "bundle", "runtime"], froms
    assert froms[0][0] == froms[2][0] == "${BASE_IMAGE}"
    runtime = text.split(" AS runtime")[1]
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert re.search(r'^ENTRYPOINT \["loopguard"\]$', runtime, re.M)
    assert "--no-install-recommends" in runtime
    assert not re.search(r"-dev\b|build-essential|cmake", runtime), "build packages in the runtime stage"
    # Release as CMake defines it (-O3), the build the README's figures come from.
    assert "-DCMAKE_BUILD_TYPE=Release" in text
    assert not re.search(r"FLAGS_RELEASE|-O[0-2]\b", text), "the image must build at -O3"


def _runtime_packages():
    runtime = _dockerfile().split(" AS runtime")[1]
    m = re.search(r"apt-get install -y --no-install-recommends ([^;&\\]+)", runtime)
    return set(m.group(1).split())


def test_dockerfile_runtime_packages_cover_the_binarys_libraries():
    """A new library dependency of loopguard must reach the runtime stage's apt-get install."""
    if not shutil.which("ldd") or not shutil.which("dpkg-query"):
        pytest.skip("needs ldd and dpkg (a Debian machine)")
    out = subprocess.run(["ldd", loopguard_bin()], capture_output=True, text=True, check=True).stdout
    base = {"libc6", "libstdc++6", "libgcc-s1"}      # in every Debian image
    sanitizers = re.compile(r"lib(asan|ubsan|lsan|tsan)\.so")
    packages = _runtime_packages()
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line)
        if not m or sanitizers.match(m.group(1)):
            continue
        owner = None
        for path in (m.group(2), os.path.realpath(m.group(2))):
            r = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0].strip()
                break
        if owner is None:
            continue                                  # not from a Debian package (a local build)
        assert owner in packages | base, \
            f"loopguard links {m.group(1)} from package {owner}, not installed by the runtime stage"


def test_image_default_config_validates_and_matches_expose():
    r = subprocess.run([loopguard_bin(), "validate", "--config", str(IMAGE_CONFIG)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    text = IMAGE_CONFIG.read_text()
    listen = re.search(r'^listen: "([^"]+)"', text, re.M).group(1)
    admin = re.search(r'^admin:\n\s+(?:#.*\n\s+)*listen: "([^"]+)"', text, re.M).group(1)
    exposed = set(re.search(r"^EXPOSE (.+)$", _dockerfile(), re.M).group(1).split())
    for addr in (listen, admin):
        assert str(parse_address(addr)[2]) in exposed, f"{addr} not in EXPOSE {exposed}"
