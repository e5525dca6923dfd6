"""Command line: subcommands, --help, usage errors (exit 2) and `validate` (exit 0 / exit 1 with
FILE:LINE:COL: message lines)."""
import json
import re

import pytest

from harness import http_request, run_cli, simple_config

ERROR_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")

# The example config of SPEC.md, verbatim: the documented example must validate.
SPEC_EXAMPLE = """\
listen: "0.0.0.0:8080"            # host:port or unix:/path
admin:
  listen: "127.0.0.1:9901"        # off unless set; keep it on loopback or a private port
log:
  level: info
  format: text                    # text | json
  access_log: true                # one line per request: time, id, method, path, route, status, bytes, duration, target
limits:
  max_connections: 10000          # further connections wait in the accept backlog
  max_header_bytes: 64KiB         # over: 431
  max_body_bytes: 0               # 0 = no limit (bodies are streamed); over: 413
timeouts:
  header: 10s                     # whole request head must arrive within (slowloris); else 408 + close
  idle: 60s                       # keep-alive idle
  drain: 30s                      # graceful shutdown budget
upstreams:
  app:
    endpoints: ["127.0.0.1:8000"] # host:port | dns-name:port | unix:/path
    balance: least_request        # least_request | round_robin
    connect_timeout: 2s           # over: 502 (or retry another endpoint, see below)
    response_timeout: 60s         # until the response head; over: 504
    max_idle_connections: 64      # keep-alive pool per endpoint
    idle_timeout: 4s              # drop pooled connections idle this long: below uvicorn's 5s keep-alive,
                                  # so the proxy never writes to a connection the app is closing
    resolve_every: 30s            # re-resolve DNS names (Kubernetes headless services)
pools:
  cpu:
    command: ["python3", "-m", "uvicorn", "app:app", "--uds", "{socket}"]
    # {socket}: a per-worker unix socket path loopguard chooses; {port}: a free
    # per-worker loopback port instead; {index}: 0..workers-1. Env LOOPGUARD_WORKER_INDEX is set too.
    workers: 2
    concurrency_per_worker: 1
    env: {PYTHONUNBUFFERED: "1"}
    workdir: "."
    ready:
      path: /                     # HTTP GET must answer (any status < 500); omit for plain connect
      timeout: 30s                # a worker not ready by then is killed and restarted
    request_timeout: 60s          # a request running longer: worker killed (SIGTERM, then SIGKILL), client gets 504
    max_requests: 0               # recycle a worker after N requests (0 = never), with jitter
    max_rss: 0                    # recycle a worker whose RSS exceeds this (0 = never)
    restart_backoff: {initial: 100ms, max: 10s}
    slow_after: 0                 # a request running longer is logged with worker pid, route and elapsed
                                  # time, and `on_slow` runs once for it (0 = off)
    on_slow: []                   # e.g. ["py-spy", "dump", "--pid", "{pid}"]: its output goes to the log
routes:                           # first match wins
  - name: hash
    match:
      prefix: /cpu/               # exactly one of prefix | exact | regex
      methods: [GET, POST]        # optional
      host: api.example.com       # optional, matches the Host header
    pool: cpu                     # exactly one of pool | upstream
    limits:
      max_in_flight: 2            # omit = unlimited
      max_queue: 64               # waiting requests beyond max_in_flight; full: 503 at once
      queue_timeout: 5s           # waited longer: 503
      overflow_status: 503        # 503 | 429
    buffer_request: true          # receive the whole body before taking a slot, so a slow upload never
                                  # holds a worker; default true for pool routes, false for upstream routes
    buffer_limit: 16MiB           # a buffered body larger than this: 413
    timeout: 30s                  # whole-request budget for this route; over: 504
  - name: default
    match: {prefix: /}
    upstream: app
    limits: {max_in_flight: 1000}
offload:                          # read only by `loopguard offload`
  listen: "unix:/var/run/loopguard/offload.sock"
  pool: cpu
"""

MINIMAL = """\
listen: "127.0.0.1:0"
upstreams:
  app:
    endpoints: ["127.0.0.1:8000"]
routes:
  - name: default
    match: {prefix: /}
    upstream: app
"""

# Five mistakes at known places (line numbers are 1-based; see the comments).
MULTI_ERROR = """\
listen: "127.0.0.1:0"
timeouts:
  header: 10 seconds
upstreams:
  app:
    endpoints: ["127.0.0.1:9"]
    bogus_key: 1
pools:
  cpu:
    command: ["/bin/true"]
routes:
  - name: a
    match: {prefix: /a}
    upstream: missing
  - name: a
    match: {prefix: /b}
    upstream: app
  - name: both
    match: {prefix: /c}
    upstream: app
    pool: cpu
"""
# line 3  col 11: bad duration ("10 seconds"; col 3 if the key is blamed)
# line 7  col 5 : unknown key bogus_key
# line 12-14    : route "a" names the missing upstream "missing"
# line 15       : second route named "a"
# line 18-21    : route "both" has both upstream and pool


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def error_lines(stderr, path):
    """Parsed FILE:LINE:COL: message lines of stderr for path."""
    out = []
    for line in stderr.splitlines():
        m = ERROR_LINE.match(line.strip())
        if m and m.group("file") == path:
            out.append((int(m.group("line")), int(m.group("col")), m.group("msg")))
    return out


def find_error(errors, lines, keywords, cols=None):
    """The first error on one of lines whose message contains any of keywords."""
    for line, col, msg in errors:
        if line in lines and any(k in msg.lower() for k in keywords):
            if cols is None or col in cols:
                return line, col, msg
    return None


# ---- version / help / usage errors ------------------------------------------------------------------
def test_version_prints_a_version_number_and_exits_0():
    r = run_cli(["version"])
    assert r.returncode == 0, r
    assert re.search(r"\b\d+\.\d+\.\d+\b", r.stdout), r.stdout


@pytest.mark.parametrize("args", [["--help"], ["proxy", "--help"], ["offload", "--help"],
                                  ["validate", "--help"], ["version", "--help"]],
                         ids=lambda a: " ".join(a))
def test_help_exits_0_with_usage_on_stdout(args):
    r = run_cli(args)
    assert r.returncode == 0, r
    assert r.stdout.strip(), r
    if args[0] in ("proxy", "offload", "validate"):
        assert "--config" in r.stdout, r.stdout
    if args[0] == "proxy":
        assert "--log-level" in r.stdout and "--log-format" in r.stdout, r.stdout
    if args == ["--help"]:
        for sub in ("proxy", "offload", "validate", "version"):
            assert sub in r.stdout, r.stdout


@pytest.mark.parametrize("args", [
    ["proxy", "--config", "x.yaml", "--bogus-flag"],
    ["validate", "--no-such-flag"],
    ["frobnicate"],
    ["proxy"],  # --config is required
    ["proxy", "--config", "x.yaml", "--log-level", "loud"],
    ["proxy", "--config", "x.yaml", "--log-format", "xml"],
], ids=["unknown flag", "unknown validate flag", "unknown subcommand", "missing --config",
        "bad --log-level", "bad --log-format"])
def test_bad_command_line_exits_2_with_usage_on_stderr(args, tmp_path):
    r = run_cli(args, cwd=str(tmp_path))
    assert r.returncode == 2, r
    assert re.search(r"usage", r.stderr, re.I), r.stderr
    assert r.stdout == "", r.stdout


# ---- validate -------------------------------------------------------------------------------------------
def test_validate_minimal_config_exits_0(tmp_path):
    path = write(tmp_path, "ok.yaml", MINIMAL)
    r = run_cli(["validate", "--config", path])
    assert r.returncode == 0, r
    assert error_lines(r.stderr, path) == [], r.stderr


def test_validate_spec_example_config_exits_0(tmp_path):
    path = write(tmp_path, "spec.yaml", SPEC_EXAMPLE)
    r = run_cli(["validate", "--config", path])
    assert r.returncode == 0, r
    assert error_lines(r.stderr, path) == [], r.stderr


def test_validate_reports_every_error_with_file_line_col(tmp_path):
    path = write(tmp_path, "bad.yaml", MULTI_ERROR)
    r = run_cli(["validate", "--config", path])
    assert r.returncode == 1, r
    errors = error_lines(r.stderr, path)
    assert len(errors) >= 5, r.stderr
    problems = []
    checks = [
        ("bad duration", [3], ["duration", "10 seconds"], [3, 11]),
        ("unknown key", [7], ["bogus_key"], [5]),
        ("dangling upstream", [12, 13, 14], ["missing"], None),
        ("duplicate route name", [15], ["duplicate", "already", "more than once"], None),
        ("both upstream and pool", [18, 19, 20, 21], ["pool"], None),
    ]
    for what, lines, keywords, cols in checks:
        if not find_error(errors, lines, keywords, cols):
            problems.append(f"{what}: no error on line(s) {lines} (col {cols}) mentioning {keywords}")
    assert not problems, "\n".join(problems) + "\nstderr:\n" + r.stderr
    assert all(line >= 1 and col >= 1 for line, col, _ in errors), errors
    assert [e[0] for e in errors] == sorted(e[0] for e in errors), "errors not in file order"


SINGLE_ERRORS = {
    "unknown top-level key": ("listen: \"127.0.0.1:0\"\nlisen: 1\n" + MINIMAL.split("\n", 1)[1],
                              [2], ["lisen"], [1]),
    "bad duration": (MINIMAL + "timeouts:\n  idle: soon\n", [10], ["duration", "soon"], [3, 9]),
    "bad size": (MINIMAL + "limits:\n  max_header_bytes: lots\n", [10], ["size", "lots"], [3, 21]),
    "wrong type": (MINIMAL + "limits:\n  max_connections: [1, 2]\n", [10], ["max_connections",
                                                                          "integer", "number"],
                   None),
    "dangling pool": (MINIMAL.replace("upstream: app", "pool: nope"), [6, 7, 8], ["nope"], None),
    "impossible overflow_status": (
        MINIMAL.replace("upstream: app", "upstream: app\n    limits: {overflow_status: 500}"),
        [9], ["overflow_status", "500"], None),
    "route without upstream or pool": (MINIMAL.replace("    upstream: app\n", ""),
                                       [6, 7], ["upstream", "pool"], None),
    "route with two match kinds": (MINIMAL.replace("{prefix: /}", "{prefix: /, exact: /x}"),
                                   [6, 7], ["prefix", "exact", "one of"], None),
    "yaml syntax error": (MINIMAL.replace("{prefix: /}", "{prefix: /"), [7, 8, 9], [""], None),
}


@pytest.mark.parametrize("case", list(SINGLE_ERRORS), ids=list(SINGLE_ERRORS))
def test_validate_single_error_exits_1_and_points_at_it(case, tmp_path):
    text, lines, keywords, cols = SINGLE_ERRORS[case]
    path = write(tmp_path, "bad.yaml", text)
    r = run_cli(["validate", "--config", path])
    assert r.returncode == 1, r
    errors = error_lines(r.stderr, path)
    assert errors, r.stderr
    assert find_error(errors, lines, keywords, cols), (
        f"expected an error on line(s) {lines} (col {cols}) mentioning {keywords}; got:\n{r.stderr}")


def test_validate_missing_file_exits_1_and_names_it(tmp_path):
    path = str(tmp_path / "nope.yaml")
    r = run_cli(["validate", "--config", path])
    assert r.returncode == 1, r
    assert path in r.stderr, r.stderr


def test_validate_config_without_listen_routes_or_offload_exits_1(tmp_path):
    path = write(tmp_path, "empty.yaml", "log: {level: info}\n")
    r = run_cli(["validate", "--config", path])
    assert r.returncode == 1, r
    assert error_lines(r.stderr, path), r.stderr


# ---- proxy start-up ---------------------------------------------------------------------------------------
def test_proxy_refuses_invalid_config_with_file_line_col(tmp_path):
    path = write(tmp_path, "bad.yaml", MULTI_ERROR)
    r = run_cli(["proxy", "--config", path], timeout=10)
    assert r.returncode == 1, r
    assert find_error(error_lines(r.stderr, path), [7], ["bogus_key"], [5]), r.stderr


def test_proxy_log_format_json_flag_makes_stderr_json_lines(procs):
    up = procs.upstream("app")
    p = procs.proxy(simple_config(up), args=["--log-format", "json"])
    assert http_request(p.port, "GET", "/echo").status == 200
    p.stop()
    lines = [l for l in p.stderr_lines if l.strip()]
    assert lines, "no log lines at all"
    for line in lines:
        assert isinstance(json.loads(line), dict), f"not a JSON object log line: {line!r}"


# ---- YAML mistakes explained at the line to fix ----------------------------------------------------
INDENTATION_ERRORS = {
    # A tab in the indentation: YAML forbids it, and it is named as the cause.
    "tab": ("listen: \"127.0.0.1:0\"\nupstreams:\n  app:\n\tendpoints: [\"127.0.0.1:8000\"]\n"
            "routes: [{match: {prefix: /}, upstream: app}]\n", 4, 1, "tab character"),
    # The first key of a block sets its column, so the parser only notices at the next key
    # (line 5, "end of map not found"); the line to fix is 4.
    "first key off by one": ("listen: \"127.0.0.1:0\"\nupstreams:\n  app:\n"
                             "     endpoints: [\"127.0.0.1:8000\"]\n    balance: round_robin\n"
                             "routes: [{match: {prefix: /}, upstream: app}]\n", 4, 6,
                             "indented 5 spaces, but the next line at its level (line 5"),
    "key under a value": (MINIMAL + "      timeout: 5s\n", 9, 7,
                          "which already has a value"),
    "key between levels": (MINIMAL.replace("    upstream: app", "   upstream: app"), 8, 4,
                           "lines up with no block around it"),
}


@pytest.mark.parametrize("case", list(INDENTATION_ERRORS), ids=list(INDENTATION_ERRORS))
def test_validate_explains_indentation_mistakes_at_the_line_to_fix(case, tmp_path):
    text, line, col, words = INDENTATION_ERRORS[case]
    path = write(tmp_path, "bad.yaml", text)
    r = run_cli(["validate", "--config", path])
    assert r.returncode == 1, r
    errors = error_lines(r.stderr, path)
    assert len(errors) == 1, r.stderr
    assert errors[0][:2] == (line, col), r.stderr
    assert words in errors[0][2] and "end of map not found" not in errors[0][2], r.stderr


# ---- warnings: valid but probably wrong ------------------------------------------------------------
WARNED = """\
listen: "127.0.0.1:0"
upstreams:
  app: {endpoints: ["127.0.0.1:8000"]}
pools:
  cpu: {command: ["w", "{socket}"], workers: 2}
  spare: {command: ["w", "{socket}"]}
routes:
  - {name: all, match: {prefix: /}, upstream: app}
  - {name: hash, match: {prefix: /cpu/}, pool: cpu, limits: {max_in_flight: 8}}
"""
# line 6: pool "spare" unused; line 9: route "hash" shadowed by "all" (line 8), and its
# max_in_flight 8 is above the pool's 2 x 1 (pool "cpu" is used by it, so not unused).


def test_validate_warns_about_valid_but_wrong_configs_and_exits_0(tmp_path):
    path = write(tmp_path, "warned.yaml", WARNED)
    r = run_cli(["validate", "--config", path])
    assert r.returncode == 0, r
    assert "ok (3 warnings)" in r.stdout, r.stdout
    warnings = [(l, c, m) for l, c, m in error_lines(r.stderr, path)]
    assert all(m.startswith("warning: ") for _, _, m in warnings), r.stderr
    assert [(l, c) for l, c, _ in warnings] == [(6, 3), (9, 5), (9, 5)], r.stderr
    text = "\n".join(m for _, _, m in warnings)
    assert 'pool "spare" is not used' in text
    assert 'route "hash" is never used: route "all" (line 8, prefix "/"' in text
    assert 'max_in_flight 8 is above the capacity of pool "cpu" (workers 2 x ' \
           'concurrency_per_worker 1 = 2)' in text


def test_proxy_logs_the_same_warnings_at_start(procs):
    up = procs.upstream("app")
    text = WARNED.replace("127.0.0.1:8000", up.address).replace('"w"', '"/bin/true"')
    p = procs.proxy(text.replace("max_in_flight: 8", "max_in_flight: 1"))
    line = p.wait_for_line(r'warning: pool "spare" is not used')
    assert "warn" in line and "[config]" in line, line
    assert any('route "hash" is never used' in l for l in p.stderr_lines)
