#!/usr/bin/env bash
# Builds deploy/Dockerfile for real and proves the images work, without a container runtime:
# `podman run` does not work on these machines (cgroups), so each image's filesystem is exported
# (`podman create` + `podman export`) and loopguard is run from it under chroot.
#
#   tests/deploy/build-image.sh [--unit-tests] [--rebuild-base] [--keep] [--context DIR]
#
#   --unit-tests     build with --build-arg RUN_UNIT_TESTS=1 (the unit tests run inside the build)
#   --rebuild-base   re-create the Debian 12 base image even if it exists
#   --keep           keep the work directory (exported filesystems, logs) for a look afterwards
#   --context DIR    build from another source tree (e.g. a clean `git archive` of a commit)
#                    instead of this working tree; the checks still use this tree's deploy/
#
# Slow (minutes: debootstrap, apt and a full compile inside the build), so it is not part of the
# default ctest suite. Needs root (chroot, mount), podman and debootstrap (installed with apt-get
# if missing), curl and python3. What it does:
#   1. base image localhost/debian:bookworm (env LOOPGUARD_BASE_IMAGE overrides), made once with
#      `debootstrap --variant=minbase bookworm` from this machine's Debian mirror, with this
#      machine's apt sources inside so the apt-get of the build uses the same mirror
#   2. podman build --isolation chroot -f deploy/Dockerfile --build-arg BASE_IMAGE=<base>
#   3. the runtime image: its config (non-root user, entrypoint, ports); no compiler or -dev
#      package in it; as uid 10001 under chroot: `version`, `validate` of the default config and
#      of deploy/examples/*.yaml, then `proxy` serving requests to an upstream on the host's
#      loopback, /healthz and /readyz on the admin port, and a clean exit on SIGTERM
#   4. the bundle for app images: `install-loopguard` (the Kubernetes init container's command)
#      copies it out of the runtime image; it runs under chroot in an EMPTY root (no libc at all)
#      and, mounted read-only at /opt/loopguard, in the demo app image the manifests run
#      (deploy/container/demo-app.Dockerfile), which has none of loopguard's libraries: there it
#      validates the Kubernetes configs, proxies requests, and runs `loopguard offload` with a
#      pool of the demo app's own uvicorn workers
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASE_IMAGE="${LOOPGUARD_BASE_IMAGE:-localhost/debian:bookworm}"
IMAGE="${LOOPGUARD_TEST_IMAGE:-localhost/loopguard:test}"
APP_IMAGE="localhost/loopguard-test-app:test"
SOURCES=/etc/apt/sources.list.d/debian.sources

unit_tests=0 rebuild_base=0 keep=0 CONTEXT="$ROOT"
while [ $# -gt 0 ]; do
  case "$1" in
    --unit-tests) unit_tests=1 ;;
    --rebuild-base) rebuild_base=1 ;;
    --keep) keep=1 ;;
    --context) [ $# -ge 2 ] || { echo "build-image: --context needs a directory" >&2; exit 2; }
               CONTEXT="$(cd "$2" && pwd)"; shift ;;
    -h|--help) sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

T0=$SECONDS
say() { printf '\033[1m==> [%4ds] %s\033[0m\n' "$((SECONDS - T0))" "$*"; }
fail() { printf 'build-image: FAIL: %s\n' "$*" >&2; exit 1; }
pass_count=0 skip_count=0
ok() { pass_count=$((pass_count + 1)); printf '    ok: %s\n' "$*"; }
skip() { skip_count=$((skip_count + 1)); printf '    SKIP: %s\n' "$*"; }

[ "$(id -u)" -eq 0 ] || fail "needs root (chroot, mount, podman import)"
need_pkgs=()
command -v podman >/dev/null || need_pkgs+=(podman)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v curl >/dev/null || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing ${need_pkgs[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi

WORK="$(mktemp -d /var/tmp/loopguard-image-test.XXXXXX)"
MOUNTS=() PIDS=() CONTAINERS=()
cleanup() {
  local rc=$? i
  trap - EXIT
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
  done
  for c in "${CONTAINERS[@]}"; do podman rm -f "$c" >/dev/null 2>&1 || true; done
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK"/*.log; do
      [ -f "$f" ] || continue
      echo "--- $f (last 40 lines)"; tail -n 40 "$f"
    done
  fi
  printf '==> [%4ds] cleaning up\n' "$((SECONDS - T0))"
  # Never rm -rf while something may still be mounted inside.
  if [ "$keep" = 1 ] || grep -q " $WORK/" /proc/mounts; then
    echo "build-image: work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  if [ "$rc" -eq 0 ]; then
    echo "build-image: $pass_count passed, 0 failed, $skip_count skipped in $((SECONDS - T0))s"
  else
    echo "build-image: FAILED after $((SECONDS - T0))s ($pass_count checks passed before)"
  fi
  exit "$rc"
}
trap cleanup EXIT

mount_at() {  # mount_at TARGET mount-args...: mounts, remembers for cleanup
  local target="$1"; shift
  mkdir -p "$target"
  mount "$@" "$target"
  MOUNTS+=("$target")
}
unmount_last() {  # unmount the last $1 mounts
  local n="$1" i
  for ((i = 0; i < n; i++)); do
    umount "${MOUNTS[-1]}"
    unset 'MOUNTS[-1]'
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {  # wait_http URL SECONDS PID: until URL answers 200; fails if PID exits
  local url="$1" deadline=$((SECONDS + $2)) pid="$3"
  until [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)" = 200 ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

stop_and_check_exit() {  # stop_and_check_exit PID NAME SECONDS: SIGTERM, expects exit 0 in time
  local pid="$1" name="$2" secs="$3" deadline rc=0
  kill -TERM "$pid"
  deadline=$((SECONDS + secs))
  while kill -0 "$pid" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$name still running ${secs}s after SIGTERM"
    sleep 0.1
  done
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "$name exited with $rc after SIGTERM"
}

# ---- 1. base image ---------------------------------------------------------------------------------
mirror="$(awk '/^URIs:/ { print $2; exit }' "$SOURCES" 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
if [ "$rebuild_base" = 1 ] || ! podman image exists "$BASE_IMAGE"; then
  say "base image $BASE_IMAGE: debootstrap --variant=minbase bookworm from $mirror"
  rootfs="$WORK/base-rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || fail "debootstrap failed (see $WORK/debootstrap.log)"
  # apt inside the build uses this machine's sources (mirror, updates and security suites).
  if [ -f "$SOURCES" ]; then
    rm -f "$rootfs/etc/apt/sources.list"
    cp "$SOURCES" "$rootfs/etc/apt/sources.list.d/debian.sources"
  fi
  if grep -rqs 'Check-Valid-Until "false"' /etc/apt/apt.conf.d/; then   # snapshot mirrors
    echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/99snapshot"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >"$WORK/import.log" 2>&1 \
    || fail "podman import failed (import.log)"
  rm -rf "$rootfs"
fi
say "base image: $BASE_IMAGE"

# ---- 2. build --------------------------------------------------------------------------------------
say "podman build --isolation chroot -f deploy/Dockerfile, context $CONTEXT (log: build.log)"
build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ "$unit_tests" = 1 ] && build_args+=(--build-arg RUN_UNIT_TESTS=1)
t_build=$SECONDS
podman build --isolation chroot "${build_args[@]}" -f "$CONTEXT/deploy/Dockerfile" -t "$IMAGE" "$CONTEXT" \
  >"$WORK/build.log" 2>&1 || fail "podman build failed (see build.log below)"
say "built $IMAGE in $((SECONDS - t_build))s"
grep -E '^make-bundle:|^loopguard [0-9]|tests passed, [0-9]+ tests failed' "$WORK/build.log" \
  | sed 's/^/    /' | sort -u || true

# ---- 3. the runtime image --------------------------------------------------------------------------
say "runtime image: config"
cfg="$(podman image inspect "$IMAGE" --format '{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{json .Config.ExposedPorts}}')"
IFS='|' read -r user entrypoint cmd ports <<<"$cfg"
[ "$user" = "10001:10001" ] || fail "image user is '$user', want 10001:10001"; ok "user $user"
[ "$entrypoint" = '["loopguard"]' ] || fail "entrypoint is $entrypoint"; ok "entrypoint $entrypoint, cmd $cmd"
for p in 8080/tcp 9901/tcp; do [[ "$ports" == *"$p"* ]] || fail "port $p not exposed ($ports)"; done
ok "exposed $ports"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE" | sed 's/^/    size: /'

export_image() {  # export_image IMAGE DIR
  local name="lg-export-$$-$RANDOM"
  podman create --name "$name" "$1" >/dev/null
  CONTAINERS+=("$name")
  mkdir -p "$2"
  podman export "$name" | tar -C "$2" -x
  podman rm "$name" >/dev/null
}
RT="$WORK/runtime-rootfs"
export_image "$IMAGE" "$RT"
ok "exported the runtime image's filesystem ($(du -sh "$RT" | cut -f1))"

say "runtime image: contents"
[ -x "$RT/usr/local/bin/loopguard" ] || fail "no /usr/local/bin/loopguard"
[ -f "$RT/etc/loopguard/loopguard.yaml" ] || fail "no default config /etc/loopguard/loopguard.yaml"
for f in usr/bin/gcc usr/bin/g++ usr/bin/cmake usr/bin/make usr/include/uv.h usr/bin/patchelf; do
  [ ! -e "$RT/$f" ] || fail "build tool left in the runtime image: /$f"
done
dev_pkgs="$(chroot "$RT" dpkg-query -W -f '${Package}\n' | grep -E -- '-dev$|^(gcc|g\+\+|cmake|build-essential)$' || true)"
[ -z "$dev_pkgs" ] || fail "build packages in the runtime image: $dev_pkgs"
ok "no compiler, cmake or -dev package"
for p in libuv1 libyaml-cpp0.7 libspdlog1.10 libfmt9 libre2-9; do
  chroot "$RT" dpkg-query -W "$p" >/dev/null 2>&1 || fail "runtime package $p missing"
done
ok "runtime packages libuv1 libyaml-cpp0.7 libspdlog1.10 libfmt9 libre2-9"
grep -q '^loopguard:x:10001:10001:' "$RT/etc/passwd" || fail "no loopguard user with uid 10001"
ok "user loopguard (10001)"

mount_at "$RT/proc" -t proc proc
mount_at "$RT/dev" --bind /dev
RUNAS=(chroot --userspec=10001:10001 "$RT")

say "runtime image: loopguard under chroot as uid 10001"
"${RUNAS[@]}" loopguard version | sed 's/^/    /'
"${RUNAS[@]}" loopguard validate --config /etc/loopguard/loopguard.yaml >/dev/null \
  || fail "the image's default config does not validate"
ok "validate /etc/loopguard/loopguard.yaml"
mkdir -p "$RT/tmp/examples"
cp "$ROOT"/deploy/examples/*.yaml "$RT/tmp/examples/" 2>/dev/null || true
for f in "$RT"/tmp/examples/*.yaml; do
  [ -f "$f" ] || continue
  "${RUNAS[@]}" loopguard validate --config "/tmp/examples/$(basename "$f")" >/dev/null \
    || fail "deploy/examples/$(basename "$f") does not validate in the image"
  ok "validate deploy/examples/$(basename "$f")"
done
rc=0; "${RUNAS[@]}" loopguard validate --config /tmp/examples/nonexistent.yaml >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "validate of a missing file exited $rc, want 1"
ok "validate of a missing file exits 1"

# An upstream on the host's loopback (chroot shares the network namespace).
WWW="$WORK/www"; mkdir -p "$WWW"
echo "hello from the upstream" >"$WWW/hello.txt"
UP_PORT=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$WWW" "$UP_PORT" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)

write_proxy_config() {  # write_proxy_config FILE LISTEN_PORT ADMIN_PORT
  cat >"$1" <<EOF
listen: "127.0.0.1:$2"
admin:
  listen: "127.0.0.1:$3"
log: {level: info, format: json, access_log: true}
timeouts: {drain: 5s}
upstreams:
  app:
    endpoints: ["127.0.0.1:$UP_PORT"]
routes:
  - name: default
    match: {prefix: /}
    upstream: app
EOF
}

check_proxy() {  # check_proxy NAME CHROOT_CMD... : runs `proxy` under the given chroot, checks it serves
  local name="$1"; shift
  local lp ap pid body code
  lp=$(free_port); ap=$(free_port)
  write_proxy_config "$CONF_DIR/proxy-test.yaml" "$lp" "$ap"
  "$@" proxy --config "$CONF_IN_ROOT/proxy-test.yaml" >"$WORK/$name.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_http "http://127.0.0.1:$lp/hello.txt" 20 "$pid" || fail "$name: no answer through the proxy"
  body="$(curl -s -m 5 "http://127.0.0.1:$lp/hello.txt")"
  [ "$body" = "hello from the upstream" ] || fail "$name: unexpected body '$body'"
  ok "$name: GET /hello.txt through the proxy -> upstream"
  code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$lp/missing")
  [ "$code" = 404 ] || fail "$name: GET /missing answered $code, want the upstream's 404"
  ok "$name: upstream 404 passed through"
  for path in /healthz /readyz; do
    code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$ap$path")
    [ "$code" = 200 ] || fail "$name: admin $path answered $code"
  done
  ok "$name: admin /healthz and /readyz 200"
  stop_and_check_exit "$pid" "$name" 15
  ok "$name: exit 0 on SIGTERM"
}

CONF_DIR="$RT/tmp"; CONF_IN_ROOT=/tmp
check_proxy runtime-proxy "${RUNAS[@]}" loopguard

# ---- 4. the bundle, in an empty root and in an app image without loopguard's libraries -------------
say "bundle: install-loopguard into a shared directory (the init container's step)"
SHARED="$WORK/shared"; mkdir -p "$SHARED"; chown 10001:10001 "$SHARED"
mount_at "$RT/bundle" --bind "$SHARED"
"${RUNAS[@]}" install-loopguard /bundle | sed 's/^/    /'
unmount_last 1
[ -x "$SHARED/bin/loopguard" ] || fail "install-loopguard left no bin/loopguard"
ok "install-loopguard copied $(ls "$SHARED/lib" | wc -l) libraries and the binary ($(du -sh "$SHARED" | cut -f1))"
unmount_last 2  # $RT/dev, $RT/proc

say "bundle: in an empty root (no libc, no shell, nothing but /opt/loopguard and /proc)"
EMPTY="$WORK/empty-root"; mkdir -p "$EMPTY/tmp"
mount_at "$EMPTY/opt/loopguard" --bind -o ro "$SHARED"
mount_at "$EMPTY/proc" -t proc proc
cp "$RT/etc/loopguard/loopguard.yaml" "$EMPTY/tmp/default.yaml"
chroot --userspec=10001:10001 "$EMPTY" /opt/loopguard/bin/loopguard version >/dev/null || fail "bundle: version"
chroot --userspec=10001:10001 "$EMPTY" /opt/loopguard/bin/loopguard validate --config /tmp/default.yaml >/dev/null \
  || fail "bundle: validate in the empty root"
ok "empty root: version, validate"
CONF_DIR="$EMPTY/tmp"; CONF_IN_ROOT=/tmp
check_proxy empty-root-proxy chroot --userspec=10001:10001 "$EMPTY" /opt/loopguard/bin/loopguard
unmount_last 2

say "bundle: in the demo app image (deploy/container/demo-app.Dockerfile; none of loopguard's libraries)"
t_app=$SECONDS
podman build --isolation chroot --build-arg BASE_IMAGE="$BASE_IMAGE" \
  -f "$CONTEXT/deploy/container/demo-app.Dockerfile" -t "$APP_IMAGE" "$CONTEXT" \
  >"$WORK/app-build.log" 2>&1 || fail "demo app image build failed (app-build.log)"
APP="$WORK/app-rootfs"
export_image "$APP_IMAGE" "$APP"
ok "demo app image built and exported in $((SECONDS - t_app))s"
cfg="$(podman image inspect "$APP_IMAGE" --format '{{.Config.User}}|{{.Config.WorkingDir}}')"
[ "$cfg" = "10001:10001|/app" ] || fail "demo app image: user|workdir is '$cfg', not 10001:10001|/app"
ok "demo app image: runs as 10001 in /app"
for lib in libuv.so.1 libyaml-cpp.so.0.7 libspdlog.so.1.10 libfmt.so.9 libre2.so.9; do
  found="$(find "$APP" -name "$lib*" -print -quit)"
  [ -z "$found" ] || fail "the app image has $lib ($found): not a fair test"
done
ok "the app image has none of libuv, yaml-cpp, spdlog, fmt, re2"

# Mounted as in deploy/kubernetes/: the bundle read-only at /opt/loopguard, configs in /etc/loopguard.
mount_at "$APP/opt/loopguard" --bind -o ro "$SHARED"
mount_at "$APP/proc" -t proc proc
mount_at "$APP/dev" --bind /dev
APPRUN=(chroot --userspec=10001:10001 "$APP")
"${APPRUN[@]}" /opt/loopguard/bin/loopguard version >/dev/null || fail "bundle does not start in the app image"
ok "app image: /opt/loopguard/bin/loopguard version"

# Every loopguard config embedded in deploy/kubernetes/ validates with the bundled binary too.
n=0
if command -v node >/dev/null; then
  [ -d "$ROOT/tests/deploy/node/node_modules" ] \
    || npm ci --prefix "$ROOT/tests/deploy/node" --no-audit --no-fund >"$WORK/npm.log" 2>&1 \
    || fail "npm ci --prefix tests/deploy/node failed (npm.log)"
  node "$ROOT/tests/deploy/validate-manifests.mjs" --extract-configs "$APP/tmp/k8s" "$ROOT/deploy/kubernetes" \
    2>"$WORK/validate-manifests.log" || fail "deploy/kubernetes/ does not validate (validate-manifests.log)"
else
  skip "node is not installed: the configs of deploy/kubernetes/ are not checked in the app image"
fi
for f in "$APP"/tmp/k8s/*; do
  [ -f "$f" ] || continue
  "${APPRUN[@]}" /opt/loopguard/bin/loopguard validate --config "/tmp/k8s/$(basename "$f")" >/dev/null \
    || fail "deploy/kubernetes config $(basename "$f") does not validate with the bundle"
  n=$((n + 1))
done
[ "$n" -eq 0 ] || ok "app image: the $n loopguard configs of deploy/kubernetes/ validate"

CONF_DIR="$APP/tmp"; CONF_IN_ROOT=/tmp
check_proxy app-image-proxy "${APPRUN[@]}" /opt/loopguard/bin/loopguard

# loopguard offload in the demo app image, as in deploy/kubernetes/: a pool of the demo app's own
# uvicorn workers, served on a TCP offload.listen as in scale-out/.
OP=$(free_port); OAP=$(free_port)
cat >"$APP/tmp/offload-test.yaml" <<EOF
admin:
  listen: "127.0.0.1:$OAP"
timeouts: {drain: 5s}
pools:
  cpu:
    command: ["python3", "-m", "uvicorn", "app:app", "--uds", "{socket}", "--log-level", "warning"]
    workers: 2
    concurrency_per_worker: 1
    env: {PYTHONUNBUFFERED: "1"}
    workdir: "/app"
    ready: {path: /healthz, timeout: 30s}
offload:
  listen: "127.0.0.1:$OP"
  pool: cpu
EOF
"${APPRUN[@]}" /opt/loopguard/bin/loopguard validate --config /tmp/offload-test.yaml >/dev/null \
  || fail "the offload test config does not validate"
"${APPRUN[@]}" /opt/loopguard/bin/loopguard offload --config /tmp/offload-test.yaml >"$WORK/app-offload.log" 2>&1 &
opid=$!; PIDS+=("$opid")
wait_http "http://127.0.0.1:$OAP/readyz" 60 "$opid" || fail "app-offload: the pool never got ready"
body="$(curl -s -m 10 "http://127.0.0.1:$OP/cpu/hash?iterations=1000")"
case "$body" in *'"digest"'*'"worker"'*) ;; *) fail "app-offload: unexpected body '$body'" ;; esac
ok "app image: loopguard offload -> the demo app's uvicorn worker ($body)"
stop_and_check_exit "$opid" app-offload 20
ok "app image: offload exit 0 on SIGTERM"
pgrep -f "uvicorn app:app --uds" >/dev/null \
  && fail "app-offload: pool workers still running after loopguard exited"
ok "app image: no pool worker left behind"

say "done"
