#!/usr/bin/env bash
# Installs what is missing (Debian packages), builds loopguard and runs the whole test suite:
# GoogleTest unit tests and the integration tests (real binary, real upstream processes).
#   deploy/run-tests.sh              normal build (build/), then the suite
#   deploy/run-tests.sh --sanitize   the same under AddressSanitizer + UBSan (build-asan/)
#   deploy/run-tests.sh --both       both, one after the other
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-normal}
deploy/install-deps.sh

run_suite() {  # $1 = build dir, $2.. = extra cmake flags
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
  # Sanitizer reports must fail the run, and leaks in the child processes we start count too.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    ctest --test-dir "$dir" --output-on-failure -j2 --timeout 600
}

case "$mode" in
  normal) run_suite build ;;
  --sanitize) run_suite build-asan -DLOOPGUARD_SANITIZE=ON ;;
  --both) run_suite build && run_suite build-asan -DLOOPGUARD_SANITIZE=ON ;;
  *) echo "usage: $0 [--sanitize|--both]" >&2; exit 2 ;;
esac
