#!/usr/bin/env bash
# The loopguard demo: the FastAPI app of deploy/examples/ on 127.0.0.1:8000, and loopguard in front
# of it on 127.0.0.1:8080 with deploy/examples/quickstart.yaml (the /cpu/ routes go to a pool of
# worker processes of the same app). Stays in the foreground until Ctrl-C / SIGTERM, then stops both.
#
#   deploy/run-demo.sh            install Debian packages, build build/loopguard, run the demo
#                                 until Ctrl-C
#   deploy/run-demo.sh --check    same, but send a few requests through the proxy, print the
#                                 answers, stop, and exit 0 only if all of them succeeded
#   deploy/run-demo.sh --advise   the loop-block advisor: loopguard without any pool route
#                                 (quickstart-no-offload.yaml), 30 s of mixed traffic, then what
#                                 `loopguard advise` finds; exit 0 only if it names the /cpu/
#                                 routes and not /io
#   deploy/run-demo.sh --auto     auto-offload, the zero-config path: loopguard with one catch-all
#                                 route and `auto_offload` (quickstart-auto.yaml), mixed traffic
#                                 until it has moved a /cpu/ endpoint to the pool by itself (at
#                                 most 90 s); exit 0 only if it then answers from a worker and /io
#                                 is still served by the app
# Options:
#   --no-deps                     skip deploy/install-deps.sh
#   --no-build                    skip the build (uses build/loopguard, or $LOOPGUARD_BIN)
#   --config FILE                 another loopguard config (default deploy/examples/quickstart.yaml)
# Environment: LOOPGUARD_BIN=path   use this binary and do not build;
#              LOOPGUARD_BUILD_TYPE  CMake build type for build/ (default Release).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLES="$ROOT/deploy/examples"
PYTHON=/usr/bin/python3
APP_ADDR=127.0.0.1:8000
PROXY_ADDR=127.0.0.1:8080
ADMIN_ADDR=127.0.0.1:9901

check=0 deps=1 build=1 advise=0 auto=0
config="$EXAMPLES/quickstart.yaml"
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=1 ;;
    --advise) advise=1; check=1 ;;
    --auto) auto=1; check=1; config="$EXAMPLES/quickstart-auto.yaml" ;;
    --no-deps) deps=0 ;;
    --no-build) build=0 ;;
    --config) [ $# -ge 2 ] || { echo "run-demo: --config needs a file" >&2; exit 2; }
              config="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-demo: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf 'run-demo: %s\n' "$*" >&2; exit 1; }

# ---- dependencies and build ----------------------------------------------------------------------
if [ "$deps" = 1 ]; then
  say "Debian packages (deploy/install-deps.sh)"
  "$ROOT/deploy/install-deps.sh"
fi

if [ -n "${LOOPGUARD_BIN:-}" ]; then
  BIN="$LOOPGUARD_BIN"
elif [ "$build" = 1 ]; then
  # A Release build unless build/ is already configured (a developer checkout), in which case
  # its build type is kept. Override with LOOPGUARD_BUILD_TYPE=Release|Debug|... (reconfigures).
  if [ -n "${LOOPGUARD_BUILD_TYPE:-}" ] || [ ! -f "$ROOT/build/CMakeCache.txt" ]; then
    say "configuring build/ (${LOOPGUARD_BUILD_TYPE:-Release})"
    cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE="${LOOPGUARD_BUILD_TYPE:-Release}" >/dev/null
  fi
  say "building loopguard (into build/)"
  cmake --build "$ROOT/build" -j "$(nproc)" --target loopguard
  BIN="$ROOT/build/loopguard"
else
  BIN="$ROOT/build/loopguard"
fi
[ -x "$BIN" ] || fail "no loopguard binary at $BIN (build it, or set LOOPGUARD_BIN)"
if [ "$advise" = 1 ]; then
  # No pool route, and the admin API on, for GET /advice.
  ADVISE_CONFIG="$(mktemp "${TMPDIR:-/tmp}/loopguard-advise.XXXXXX.yaml")"
  { cat "$EXAMPLES/quickstart-no-offload.yaml"; printf '\nadmin: {listen: "%s"}\n' "$ADMIN_ADDR"; } >"$ADVISE_CONFIG"
  config="$ADVISE_CONFIG"
fi
"$BIN" validate --config "$config" >/dev/null || fail "$config is not a valid loopguard config"

# ---- processes --------------------------------------------------------------------------------------
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
for addr in "$APP_ADDR" "$PROXY_ADDR"; do
  if listening "$addr"; then fail "something already listens on $addr: stop it first"; fi
done

LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/loopguard-demo.XXXXXX")"
APP_LOG="$LOGDIR/app.log"
PROXY_LOG="$LOGDIR/loopguard.log"
APP_PID="" PROXY_PID=""

# Stops one process: SIGTERM, then SIGKILL after $2 seconds. loopguard drains its in-flight requests
# and stops its pool workers itself on SIGTERM.
stop_pid() {
  local pid="$1" grace="$2" i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "run-demo: pid $pid still running after ${grace}s, sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$PROXY_PID$APP_PID" ]; then say "stopping loopguard and the app"; fi
  stop_pid "$PROXY_PID" 40   # timeouts.drain is 30s
  stop_pid "$APP_PID" 10
  PROXY_PID="" APP_PID=""
  if [ "$rc" -ne 0 ] && [ "$check" = 1 ]; then
    echo "--- app log ($APP_LOG)"; tail -n 40 "$APP_LOG" 2>/dev/null || true
    echo "--- loopguard log ($PROXY_LOG)"; tail -n 60 "$PROXY_LOG" 2>/dev/null || true
  fi
  if [ "$rc" -eq 0 ] || [ "$check" = 0 ]; then rm -rf "$LOGDIR"; fi
  [ -z "${ADVISE_CONFIG:-}" ] || rm -f "$ADVISE_CONFIG"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Both run in their own session, so a Ctrl-C in this terminal reaches only this script, which then
# sends each of them exactly one SIGTERM (a second one would make loopguard skip its drain).
# Both run from deploy/examples/: the pool's `app:app` and `workdir: "."` are relative to it.
# In --check mode their output goes to files (shown if a check fails); otherwise to this terminal.
if [ "$check" = 1 ]; then exec 4>"$APP_LOG" 5>"$PROXY_LOG"; else exec 4>&2 5>&2; fi
say "starting the app: uvicorn app:app on $APP_ADDR"
cd "$EXAMPLES"
setsid "$PYTHON" -m uvicorn app:app --host "${APP_ADDR%:*}" --port "${APP_ADDR#*:}" \
  --log-level warning >&4 2>&4 </dev/null &
APP_PID=$!
exec 4>&-

# http_get URL -> prints "STATUS BODY"; never waits more than 10 s.
http_get() { curl -s -m 10 -o - -w '\n%{http_code}' "$@" 2>/dev/null || true; }
status_of() { tail -n 1 <<<"$1"; }
body_of() { sed '$d' <<<"$1"; }

wait_for() {  # wait_for DESC SECONDS URL: until URL answers 200
  local desc="$1" secs="$2" url="$3" deadline=$((SECONDS + $2)) r
  while :; do
    r="$(http_get "$url")"
    [ "$(status_of "$r")" = 200 ] && return 0
    kill -0 "$APP_PID" 2>/dev/null || fail "the app exited"
    [ -z "$PROXY_PID" ] || kill -0 "$PROXY_PID" 2>/dev/null || fail "loopguard exited"
    [ "$SECONDS" -lt "$deadline" ] || fail "$desc not ready after ${secs}s (last answer: $(status_of "$r"))"
    sleep 0.2
  done
}
wait_for "the app" 30 "http://$APP_ADDR/healthz"
say "starting loopguard: $BIN proxy --config $config"
setsid "$BIN" proxy --config "$config" >&5 2>&5 </dev/null &
PROXY_PID=$!
exec 5>&-
wait_for "loopguard" 30 "http://$PROXY_ADDR/healthz"
# The pool is ready when a /cpu/ request is answered (its workers start in the background); with
# auto-offload the app answers /cpu/ at first, so ask /readyz instead. (Not a cheap /cpu/ request
# either: the advisor bounds an endpoint's stall by its fastest response in the last 256, and a
# 1-iteration hash would hide the real ones' for the whole demo.)
if [ "$auto" = 1 ] || [ "$advise" = 1 ]; then
  wait_for "the cpu pool" 60 "http://$ADMIN_ADDR/readyz"
else
  wait_for "the cpu pool" 60 "http://$PROXY_ADDR/cpu/hash?iterations=1"
fi
APP_PID_SEEN="$(http_get "http://$APP_ADDR/healthz" | grep -o '"pid":[0-9]*' | cut -d: -f2 || true)"

# drive_traffic SECONDS [PREFIX]: independent clients (Poisson arrivals) through loopguard, the I/O
# route at 40/s and the CPU routes at 4/s each; with PREFIX (auto-offload), until GET /advice says
# an endpoint under PREFIX is offloaded (it prints which, and when, on stdout). Exit status 1 if
# any request failed.
drive_traffic() {
  "$PYTHON" - "$PROXY_ADDR" "$ADMIN_ADDR" "$1" "${2:-}" <<'PYEOF'
import http.client, json, random, sys, threading, time
host, port = sys.argv[1].split(":")
admin_host, admin_port = sys.argv[2].split(":")
seconds, watch = float(sys.argv[3]), sys.argv[4]
spec = {"/io": 40, "/cpu/hash?iterations=60000": 4, "/cpu/factorial?n=30000": 4}
started = time.monotonic()
end = started + seconds
errors = []
def client(path, rate, seed):
    rnd, conn = random.Random(seed), None
    t = time.monotonic()
    while True:
        if rate is not None:
            t += rnd.expovariate(rate)
            if t > end: return
            time.sleep(max(0, t - time.monotonic()))
        elif time.monotonic() > end:
            return
        try:
            conn = conn or http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("GET", path); r = conn.getresponse(); r.read()
            if r.status != 200: errors.append(r.status)
        except OSError as e:
            conn = None; errors.append(repr(e))
threads = [threading.Thread(target=client, args=(p, r and r / 4, i * 4 + k), daemon=True)
           for i, (p, r) in enumerate(spec.items()) for k in range(4 if r else 2)]
for t in threads: t.start()
while watch and time.monotonic() < end:
    time.sleep(0.5)
    try:
        c = http.client.HTTPConnection(admin_host, int(admin_port), timeout=5)
        c.request("GET", "/advice"); report = json.loads(c.getresponse().read())
    except (OSError, ValueError):
        continue
    moved = [e["path"] for e in report["endpoints"] if e["path"].startswith(watch) and e["offloaded"]]
    if moved:
        print(moved[0], round(time.monotonic() - started, 1))
        end = time.monotonic()  # the clients stop at their next request
for t in threads: t.join()
sys.exit(1 if errors else 0)
PYEOF
}

# ---- --advise: which endpoints block the app's loop ---------------------------------------------------
if [ "$advise" = 1 ]; then
  say "driving 30 s of mixed traffic through loopguard (no pool: the app serves everything)"
  drive_traffic 30 || fail "some requests failed"
  say "loopguard advise --admin $ADMIN_ADDR"
  report="$("$BIN" advise --admin "$ADMIN_ADDR")" || fail "loopguard advise failed"
  printf '%s\n' "$report"
  grep -Eq '^cpu +GET +/cpu/(hash|factorial) +[0-9]+ +blocks_loop' <<<"$report" \
    || fail "the advisor did not flag the /cpu/ routes"
  if grep -Eq '^default +GET +/io +[0-9]+ +blocks_loop' <<<"$report"; then fail "the advisor flagged /io"; fi
  say "the advisor found the CPU routes; deploy/examples/quickstart.yaml sends them to a pool"
  exit 0
fi

# ---- --auto: auto-offload moves the blocking endpoints by itself -----------------------------------
if [ "$auto" = 1 ]; then
  pid_of() { grep -o '"pid":[0-9]*' <<<"$1" | head -n 1 | cut -d: -f2; }
  r="$(http_get "http://$PROXY_ADDR/cpu/hash?iterations=60000")"  # as the traffic asks (above)
  say "before: GET /cpu/hash answers from pid $(pid_of "$r") (the app is pid $APP_PID_SEEN); one route, no pool route"
  say "driving mixed traffic through loopguard (GET /io 40/s, GET /cpu/hash and /cpu/factorial 4/s each) until it moves a /cpu/ endpoint (at most 90 s)"
  moved="$(drive_traffic 90 /cpu/)" || fail "some requests failed"
  moved_path="${moved% *}"
  [ -n "$moved" ] || fail "nothing was moved in 90 s (see GET /advice; on a busy machine the advisor's margins shrink)"
  say "$moved_path moved to the pool after ${moved#* } s of traffic"
  say "what loopguard logged"
  grep 'auto-offload' "$PROXY_LOG" || true
  say "GET /advice (route, method, path, verdict, offloaded, since)"
  http_get "http://$ADMIN_ADDR/advice" | sed '$d' | "$PYTHON" -c '
import json, sys
for e in json.load(sys.stdin)["endpoints"]:
    cells = (e["route"], e["method"], e["path"], e["verdict"], str(e["offloaded"]).lower(), e["since"] or "")
    print("    %-6s %-5s %-16s %-16s offloaded=%-5s %s" % cells)'
  r="$(http_get "http://$PROXY_ADDR$moved_path")"
  worker_pid="$(pid_of "$r")"
  say "after: GET $moved_path answers from pid $worker_pid"
  [ -n "$worker_pid" ] && [ "$worker_pid" != "$APP_PID_SEEN" ] || fail "$moved_path is still served by the app"
  r="$(http_get "http://$PROXY_ADDR/io")"
  [ "$(pid_of "$r")" = "$APP_PID_SEEN" ] || fail "/io is not served by the app"
  say "auto-offload moved the CPU endpoint to the pool; /io stays on the app"
  exit 0
fi

# ---- --check: a few requests through the proxy ------------------------------------------------------
if [ "$check" = 1 ]; then
  failures=0
  # With a config that declares no pool (quickstart-no-offload.yaml), the app serves /cpu/ itself.
  offload_expected=""; if grep -q '^pools:' "$config"; then offload_expected=offloaded; fi
  img="$LOGDIR/photo.png"
  "$PYTHON" - "$img" <<'EOF'
import sys
from PIL import Image, ImageDraw
img = Image.new("RGB", (1200, 800), (30, 90, 160))
draw = ImageDraw.Draw(img)
for i in range(0, 1200, 60):
    draw.rectangle([i, (i * 2) % 800, i + 40, (i * 2) % 800 + 40], fill=(240, 200 - i % 200, 40))
img.save(sys.argv[1])
EOF
  expect() {  # expect NAME RESULT [offloaded]: RESULT is "BODY\nSTATUS"
    local name="$1" r="$2" offloaded="${3:-}" st pid
    st="$(status_of "$r")"
    printf '%-34s -> %s  %s\n' "$name" "$st" "$(body_of "$r" | head -c 200)"
    if [ "$st" != 200 ]; then failures=$((failures + 1)); return; fi
    if [ -n "$offloaded" ]; then
      pid="$(body_of "$r" | grep -o '"pid":[0-9]*' | cut -d: -f2 || true)"
      if [ -n "$pid" ] && [ "$pid" = "$APP_PID_SEEN" ]; then
        echo "    ^ served by the app itself (pid $pid), not by a pool worker"; failures=$((failures + 1))
      fi
    fi
  }
  say "checking through loopguard on $PROXY_ADDR (the app's own pid is $APP_PID_SEEN)"
  expect "GET /" "$(http_get "http://$PROXY_ADDR/")"
  expect "GET /io" "$(http_get "http://$PROXY_ADDR/io")"
  expect "GET /cpu/hash" "$(http_get "http://$PROXY_ADDR/cpu/hash")" "$offload_expected"
  expect "GET /cpu/factorial?n=20000" "$(http_get "http://$PROXY_ADDR/cpu/factorial?n=20000")" "$offload_expected"
  thumb="$LOGDIR/thumb.jpg"
  r="$(curl -s -m 20 -o "$thumb" -D "$LOGDIR/thumb.headers" -w '%{http_code}' \
       -F "file=@$img;type=image/png" "http://$PROXY_ADDR/cpu/thumbnail?size=160" 2>/dev/null || true)"
  thumb_pid="$(grep -i '^x-app-pid:' "$LOGDIR/thumb.headers" 2>/dev/null | tr -dc 0-9 || true)"
  size="$(grep -i '^x-thumbnail-size:' "$LOGDIR/thumb.headers" 2>/dev/null | tr -d '\r' | cut -d' ' -f2 || true)"
  magic="$(head -c 3 "$thumb" 2>/dev/null | od -An -tx1 | tr -d ' \n' || true)"
  printf '%-34s -> %s  %s bytes, %s, jpeg magic %s, pid %s\n' "POST /cpu/thumbnail (1200x800 png)" \
    "$r" "$(stat -c %s "$thumb" 2>/dev/null || echo 0)" "${size:-?}" "$magic" "${thumb_pid:-?}"
  if [ "$r" != 200 ] || [ "$magic" != ffd8ff ] || [ "${size:-}" != 160x107 ] \
     || { [ -n "$offload_expected" ] && [ "${thumb_pid:-}" = "$APP_PID_SEEN" ]; }; then
    failures=$((failures + 1))
  fi
  if [ "$failures" -ne 0 ]; then fail "$failures check(s) failed"; fi
  say "all checks passed"
  exit 0
fi

# ---- foreground: print where to send requests, wait for Ctrl-C --------------------------------------
admin_hint=""
if listening "$ADMIN_ADDR"; then
  admin_hint="  curl http://$ADMIN_ADDR/metrics               # loopguard's admin API: /readyz /metrics /config
"
fi
cat <<EOF

loopguard is listening on http://$PROXY_ADDR (the app itself on http://$APP_ADDR, pid $APP_PID_SEEN).
Try:
  curl http://$PROXY_ADDR/                      # the routes
  curl http://$PROXY_ADDR/io                    # I/O route: served by the app (pid $APP_PID_SEEN)
  curl http://$PROXY_ADDR/cpu/hash              # CPU route: served by a pool worker (another pid)
  curl 'http://$PROXY_ADDR/cpu/factorial?n=40000'
  curl -F file=@some-image.png -o thumb.jpg 'http://$PROXY_ADDR/cpu/thumbnail?size=128'
${admin_hint}The latency experiment: tests/bench/offload_latency.sh
Press Ctrl-C to stop.

EOF
while kill -0 "$APP_PID" 2>/dev/null && kill -0 "$PROXY_PID" 2>/dev/null; do
  sleep 1 &
  wait $! || true
done
kill -0 "$APP_PID" 2>/dev/null || fail "the app exited unexpectedly"
fail "loopguard exited unexpectedly"
