#!/usr/bin/env bash
# What a proxy costs: one fixed upstream (nginx), reached directly, through loopguard, through
# nginx (1 worker, upstream keepalive) and through HAProxy (nbthread 1, http-reuse always),
# alternated in one run; medians of req/s, p50, p99 (wrk --latency) and CPU time per request of
# each proxy. Scenarios: small body c=50, 16 KiB, 1 MiB, 1,000 connections (pool 64 and 1024).
#
#   tests/bench/proxy_overhead.sh [--duration 3] [--warmup 1] [--rounds 5]
#                                 [--scenarios small,16k,1m,c1000,c1000-pool1024]
#                                 [--variants direct,loopguard,nginx,haproxy] [--out-dir DIR]
#                                 [--no-pin]   (default: proxy pinned to CPU 1, the rest to CPU 0)
# Environment: LOOPGUARD_BIN (default build-bench/loopguard, else build/loopguard).
# Default run: about 7 minutes. Table on stdout; .md/.json/.dat/.png in tests/bench/results/.
. "$(dirname "${BASH_SOURCE[0]}")/bench_common.sh"
bench_run proxy_overhead "$@"
