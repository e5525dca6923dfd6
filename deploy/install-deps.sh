#!/usr/bin/env bash
# Installs everything loopguard needs to build, test and run its demo, from Debian 12 packages only.
# Idempotent: packages already present are left alone. Runs as root (or with sudo available).
set -euo pipefail

build_pkgs=(
  build-essential cmake pkg-config git ca-certificates
  libuv1-dev node-llhttp libyaml-cpp-dev libspdlog-dev libfmt-dev
  googletest libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev libre2-dev
)
# What the demo app (deploy/examples/app.py) imports; deploy/container/demo-app.Dockerfile
# installs the same set (tests/integration/test_deploy_manifests.py checks).
demo_pkgs=(
  python3 python3-fastapi python3-uvicorn python3-aiosqlite python3-multipart python3-pil
)
test_pkgs=(
  "${demo_pkgs[@]}" python3-pytest python3-prometheus-client python3-h11
  curl wrk procps iproute2 nodejs node-express
  python3-yaml prometheus chromium   # the dashboard/alert/autoscaling checks and the status page test
  # the fuzz step (tests/fuzz): libFuzzer and the sanitizer runtimes for clang 14, and
  # llvm-symbolizer for readable crash reports
  clang libfuzzer-14-dev libclang-rt-14-dev llvm-14
)
bench_pkgs=(nginx haproxy hey gnuplot-nox)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
if [ "${1:-}" = "--bench" ]; then want+=("${bench_pkgs[@]}"); fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
updated=0
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -q
  updated=1
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian ships npm apart from nodejs (other nodejs builds bundle it).
if ! command -v npm >/dev/null; then
  [ $updated = 1 ] || $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends npm
fi

# The Kubernetes manifest checks validate with the npm package kubernetes-models, pinned by
# tests/deploy/node/package-lock.json (installed into that folder only).
here=$(cd "$(dirname "$0")/.." && pwd)
lock="$here/tests/deploy/node/package-lock.json"
stamp="$here/tests/deploy/node/node_modules/.installed-from-lock"
if [ -f "$lock" ] && ! cmp -s "$lock" "$stamp" 2>/dev/null; then
  # Not fatal: without the registry only those checks are skipped (and they say so).
  if npm ci --prefix "$here/tests/deploy/node" --no-audit --no-fund --loglevel=error; then
    cp "$lock" "$stamp"
  else
    echo "install-deps: WARNING: npm could not install tests/deploy/node (registry unreachable?);" \
         "the Kubernetes manifest schema checks will be skipped" >&2
  fi
fi
echo "install-deps: ready"
