#!/usr/bin/env bash
# Installs everything loopguard needs to build, test and run its demo, from Debian 12 packages only.
# Idempotent: packages already present are left alone. Runs as root (or with sudo available).
set -euo pipefail

build_pkgs=(
  build-essential cmake pkg-config git ca-certificates
  libuv1-dev node-llhttp libyaml-cpp-dev libspdlog-dev libfmt-dev
  googletest libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev libre2-dev
)
test_pkgs=(
  python3 python3-pytest python3-fastapi python3-uvicorn python3-aiosqlite
  python3-multipart python3-pil python3-prometheus-client
  curl wrk procps iproute2
)
bench_pkgs=(nginx haproxy hey gnuplot-nox)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
if [ "${1:-}" = "--bench" ]; then want+=("${bench_pkgs[@]}"); fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
