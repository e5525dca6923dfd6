#!/usr/bin/env bash
# Installs what is missing (Debian packages), builds loopguard and runs the whole test suite:
# GoogleTest unit tests and the integration tests (real binary, real upstream processes).
#   deploy/run-tests.sh              normal build (build/), then the suite
#   deploy/run-tests.sh --sanitize   the same under AddressSanitizer + UBSan (build-asan/)
#   deploy/run-tests.sh --both       both, one after the other (what CI runs)
#   deploy/run-tests.sh --fuzz       only the fuzz step
# --sanitize and --both end with the fuzz step: every libFuzzer target (tests/fuzz) built with clang
# under ASan+UBSan (build-fuzz/) and run for LOOPGUARD_FUZZ_SECONDS each (default 20; 0 skips),
# two at a time. A crash fails the run; tests/fuzz/README.md says how to reproduce it.
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

run_fuzz() {
  local seconds=${LOOPGUARD_FUZZ_SECONDS:-20}
  if [ "$seconds" = 0 ]; then echo "run-tests: fuzz step skipped (LOOPGUARD_FUZZ_SECONDS=0)"; return; fi
  cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DLOOPGUARD_FUZZ=ON -DLOOPGUARD_TESTS=OFF \
    -DLOOPGUARD_FUZZ_SECONDS="$seconds" >/dev/null
  cmake --build build-fuzz --target fuzz_targets -j"$(nproc)"
  ctest --test-dir build-fuzz/tests/fuzz -L fuzz --output-on-failure -j2
}

case "$mode" in
  normal) run_suite build ;;
  --sanitize) run_suite build-asan -DLOOPGUARD_SANITIZE=ON && run_fuzz ;;
  --both) run_suite build && run_suite build-asan -DLOOPGUARD_SANITIZE=ON && run_fuzz ;;
  --fuzz) run_fuzz ;;
  *) echo "usage: $0 [--sanitize|--both|--fuzz]" >&2; exit 2 ;;
esac
