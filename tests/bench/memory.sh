#!/usr/bin/env bash
# RSS growth of each proxy (loopguard, nginx worker, HAProxy) holding 10,000 idle keep-alive
# client connections that have each made one request: KiB per idle connection.
#
#   tests/bench/memory.sh [--connections 10000] [--rounds 3] [--settle 2]
#                         [--proxies loopguard,nginx,haproxy] [--out-dir DIR]
# Environment: LOOPGUARD_BIN (default build-bench/loopguard, else build/loopguard).
# Default run: about 2 minutes. Table on stdout; .md/.json/.dat/.png in tests/bench/results/.
. "$(dirname "${BASH_SOURCE[0]}")/bench_common.sh"
bench_run memory "$@"
