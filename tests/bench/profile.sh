#!/usr/bin/env bash
# Profile loopguard under a short wrk load (small bodies, keep-alive): top functions by self and
# inclusive cost, for tuning the hot path.
#
#   tests/bench/profile.sh [--tool perf|callgrind] [--duration S] [--conns N] [--top 15]
# perf: 10 s of wrk -t1 -c50, perf record --call-graph dwarf on the proxy (about 1 minute).
# callgrind: loopguard under valgrind, wrk -t1 -c10 for 3 s (about 1-2 minutes).
# Environment: LOOPGUARD_BIN. Build with symbols: -DCMAKE_CXX_FLAGS=-g (see README.md).
. "$(dirname "${BASH_SOURCE[0]}")/bench_common.sh"
bench_run profile_proxy "$@"
