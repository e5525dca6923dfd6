#!/usr/bin/env bash
# The loop-block advisor's benchmark (see advisor.py): time to a correct verdict vs traffic rate
# and block length, false positives over a long run, CPU cost of the statistics and of advice on
# vs off. Prints Markdown tables; results (table, JSON, PNG chart) go to tests/bench/results/.
#
#   tests/bench/advisor.sh [--blocks 1,2,5,20] [--rates 20,50,100] [--limit 40] [--long-run 180]
# Environment: LOOPGUARD_BIN (default build/loopguard). About 20 minutes by default.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
for t in wrk nginx gnuplot; do
  if ! command -v "$t" >/dev/null 2>&1; then
    echo "advisor: $t missing, installing the benchmark packages (deploy/install-deps.sh --bench)" >&2
    "$ROOT/deploy/install-deps.sh" --bench >&2 || echo "advisor: could not install them" >&2
    break
  fi
done
/usr/bin/python3 "$HERE/advisor.py" "$@"
rc=$?
if [ "$rc" -eq 2 ]; then exit 2; fi
if [ "$rc" -ne 0 ]; then echo "advisor: the benchmark stopped early (exit $rc)" >&2; fi
exit 0
