#!/usr/bin/env bash
# Overload that stays fast (see overload.py): a 20 ms CPU endpoint offered 0.5x-3x its capacity,
# open loop, through loopguard's queue orders (fifo, lifo, adaptive) with fixed and `auto` limits,
# and HAProxy (maxconn + timeout queue) as the anchor, all in one run. Prints a Markdown table;
# results (table, JSON, PNG chart) go to tests/bench/results/.
#
#   tests/bench/overload.sh [--loads 0.5,1,1.5,2,3] [--duration 10] [--variants ...]
#                           [--app cpu|db] [--fixed 2]
# Environment: LOOPGUARD_BIN (default build-bench/loopguard, else build/loopguard).
# A benchmark never fails the build: it reports what it could measure and exits 0.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bench_common.sh"
bench_run overload "$@"
