#!/usr/bin/env bash
# Soak: mixed traffic (normal requests, client aborts mid-request and mid-response, a slow
# reader, upstream resets, an offload pool) against loopguard with a config reload every 30 s;
# RSS, open fds and connection gauges sampled every 5 s; growth per hour of each and every
# request by outcome (0 lost). See soak.py for the details.
#
#   tests/bench/soak.sh [--minutes 10] [--sample 5] [--reload-every 30] [--clients 8] [--rate 200]
# Environment: LOOPGUARD_BIN (default build-bench/loopguard, else build/loopguard).
# Default run: 10 minutes (+ ~15 s of set-up). Table on stdout; .md/.json/.dat/.png in
# tests/bench/results/, the chart also as tests/bench/charts/soak.png.
. "$(dirname "${BASH_SOURCE[0]}")/bench_common.sh"
bench_run soak "$@"
