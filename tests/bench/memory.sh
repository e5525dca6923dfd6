#!/usr/bin/env bash
# RSS growth of each proxy (loopguard, nginx worker with tuned and with default proxy buffers,
# HAProxy) per connection: 10,000 idle keep-alive clients that each made one request; 100 slow
# readers of a 32 MiB response; 100 pipelining clients that never read.
#
#   tests/bench/memory.sh [--scenarios idle,slow,pipeline] [--connections 10000] [--stalled 100]
#                         [--rounds 3] [--settle 2]
#                         [--proxies loopguard,nginx,nginx-defaults,haproxy] [--out-dir DIR]
# Environment: LOOPGUARD_BIN (default build-bench/loopguard, else build/loopguard).
# Default run: about 6 minutes. Table on stdout; .md/.json/.dat/.png in tests/bench/results/.
. "$(dirname "${BASH_SOURCE[0]}")/bench_common.sh"
bench_run memory "$@"
