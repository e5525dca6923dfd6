"""What pool workers write goes to loopguard's log without flooding it: stdout (where uvicorn
writes its access log) at debug, stderr (errors, tracebacks) at info but at most a burst of 50
lines and then 10 per second, the rest at debug with a count; a worker that fails to start is
reported without repeating the lines already logged.""" 
import re

from offload_support import config_text, lines_matching, pool_def, pool_route, wait_ready

CHATTER = 300


def chatty(procs, level):
    text = config_text({"cpu": pool_def(["--boot-chatter", str(CHATTER)], workers=1)},
                       [pool_route()], log={"level": level})
    proxy = procs.proxy(text)
    wait_ready(proxy, 1)
    return proxy


def test_stdout_at_debug_and_stderr_at_info_within_a_budget(procs):
    proxy = chatty(procs, "info")
    # The burst passes at once; the rest of the 300 came within milliseconds, so over budget.
    # Their count is logged with the next stderr line that fits, or when the worker exits.
    proxy.stop()
    stderr_lines = lines_matching(proxy, r"\[cpu/0\] chatter stderr \d+$")
    assert 50 <= len(stderr_lines) <= 60, len(stderr_lines)   # the burst, plus what 10/s refilled
    assert "chatter stderr 0" in stderr_lines[0] and " info " in stderr_lines[0]
    assert not lines_matching(proxy, r"chatter stdout"), "stdout must not be logged at info"
    summary = lines_matching(proxy, r"more stderr lines went to the debug log")
    counted = sum(int(re.search(r"\] (\d+) more", l).group(1)) for l in summary)
    # Every chatter line is either shown or counted (+1: "got SIGTERM" at the stop may be too).
    assert CHATTER <= len(stderr_lines) + counted <= CHATTER + 1, (len(stderr_lines), counted)


def test_at_debug_every_line_is_there(procs):
    proxy = chatty(procs, "debug")
    proxy.wait_for_line(rf"\[cpu/0\] chatter stdout {CHATTER - 1}$", timeout=10)
    proxy.wait_for_line(rf"\[cpu/0\] chatter stderr {CHATTER - 1}$", timeout=10)
    assert " debug " in lines_matching(proxy, r"chatter stdout 0$")[0]


def test_a_boot_failure_is_reported_once(procs):
    text = config_text({"cpu": pool_def(["--boot-exit", "3"], workers=1,
                                        restart_backoff={"initial": "5s", "max": "5s"})},
                       [pool_route()])
    proxy = procs.proxy(text)
    line = proxy.wait_for_line(r"pool cpu: worker 0 failed to start: exit code 3")
    said = lines_matching(proxy, r"configured to fail at boot")
    assert len(said) == 1, said       # once, as it came, not again in the failure report
    assert "its output is in the lines above" in line, line
