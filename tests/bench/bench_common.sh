# Sourced by the benchmark scripts (proxy_overhead.sh, memory.sh, streaming.sh, profile.sh).
# bench_run NAME ARGS...: runs NAME.py with the benchmark packages present, a raised fd limit,
# and a trap that stops the driver (which stops everything it started) if this script is
# interrupted. Exit status: 0 once a table was printed (a benchmark never fails a build),
# 2 when the set-up itself is impossible (no wrk/nginx, no way to install them).
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_ROOT="$(cd "$BENCH_DIR/../.." && pwd)"

bench_run() {
  local name="$1"; shift
  local missing=()
  for t in wrk nginx haproxy gnuplot; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "$name: missing ${missing[*]}: installing the benchmark packages (deploy/install-deps.sh --bench)" >&2
    "$BENCH_ROOT/deploy/install-deps.sh" --bench >&2 || echo "$name: could not install them" >&2
  fi
  # One fd per connection on each side: raise the soft limit as far as the hard one allows.
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  local py=/usr/bin/python3
  [ -x "$py" ] || py="$(command -v python3)"
  "$py" "$BENCH_DIR/$name.py" "$@" &
  local pid=$!
  trap "kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; exit 130" INT TERM HUP
  wait "$pid"
  local rc=$?
  trap - INT TERM HUP
  if [ "$rc" -eq 2 ]; then
    echo "$name: set-up impossible (see above)" >&2
    exit 2
  fi
  if [ "$rc" -ne 0 ]; then echo "$name: the benchmark stopped early (exit $rc)" >&2; fi
  exit 0
}
