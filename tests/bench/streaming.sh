#!/usr/bin/env bash
# Peak RSS of each proxy (loopguard, nginx worker, HAProxy) streaming 1 GiB to a slow reader
# (first 256 MiB at 64 MiB/s with a 2 s stop, then full speed).
#
#   tests/bench/streaming.sh [--size-mib 1024] [--rate 64] [--slow-mib 256] [--pause 2]
#                            [--rounds 3] [--proxies loopguard,nginx,haproxy] [--out-dir DIR]
# Environment: LOOPGUARD_BIN (default build-bench/loopguard, else build/loopguard).
# Default run: about 1.5 minutes. Table on stdout; .md/.json/.dat/.png in tests/bench/results/.
. "$(dirname "${BASH_SOURCE[0]}")/bench_common.sh"
bench_run streaming "$@"
