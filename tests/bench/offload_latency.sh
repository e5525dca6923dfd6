#!/usr/bin/env bash
# The seed experiment (see offload_latency.py): the demo app's I/O route at a fixed offered load,
# alone and while clients hammer a CPU route — directly, through loopguard without offload, and
# through loopguard with the CPU routes offloaded (deploy/examples/quickstart.yaml). Prints a
# Markdown table; results (table, JSON, PNG chart) go to tests/bench/results/.
#
#   tests/bench/offload_latency.sh [--rate 200] [--duration 10] [--rounds 3] [--cpu-clients 2]
#                                  [--variants direct,proxy,offload,offload-2workers,auto]
# "auto": one catch-all route with auto_offload (deploy/examples/quickstart-auto.yaml), measured
# after its learning period (reported: how long it took to move the CPU route to the pool).
# Environment: LOOPGUARD_BIN (default build/loopguard; build it Release for numbers worth quoting).
# A benchmark never fails the build: it reports what it could measure and exits 0.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

if ! command -v gnuplot >/dev/null 2>&1; then
  echo "offload_latency: gnuplot missing, installing the benchmark packages (deploy/install-deps.sh --bench)" >&2
  "$ROOT/deploy/install-deps.sh" --bench >&2 || echo "offload_latency: could not install them: no chart" >&2
fi
/usr/bin/python3 "$HERE/offload_latency.py" "$@"
rc=$?
if [ "$rc" -ne 0 ]; then echo "offload_latency: the benchmark stopped early (exit $rc)" >&2; fi
exit 0
