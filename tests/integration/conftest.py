"""pytest fixtures for loopguard's integration tests (helpers live in harness.py).

  procs / module_procs   a ProcessRegistry for this test / this module: .upstream(...),
                         .proxy(config_text, ...), .path(name), .on_cleanup(fn); teardown kills
                         whatever is still running
  make_upstream          procs.upstream: start a fake upstream (several allowed; unix=True)
  upstream               one fake upstream, started
  start_proxy            procs.proxy: start loopguard on a config text, wait for 'listening on'

When a test fails, the logs of every live proxy and fake upstream are attached to its report.
"""
import pytest

import harness


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for reg in list(harness.ProcessRegistry.active):
            text = reg.dump_logs()
            if text.strip():
                report.sections.append((f"processes of {reg.label}", text))


@pytest.fixture(scope="session")
def loopguard_bin():
    return harness.loopguard_bin()


@pytest.fixture
def procs(request, loopguard_bin):
    reg = harness.ProcessRegistry(request.node.name)
    yield reg
    reg.cleanup()


@pytest.fixture(scope="module")
def module_procs(request, loopguard_bin):
    reg = harness.ProcessRegistry(request.module.__name__)
    yield reg
    reg.cleanup()


@pytest.fixture
def make_upstream(procs):
    return procs.upstream


@pytest.fixture
def upstream(procs):
    return procs.upstream("app")


@pytest.fixture
def start_proxy(procs):
    return procs.proxy


@pytest.fixture
def blackhole():
    """A harness.Blackhole (a TCP port whose connects hang); skips the test on a kernel where
    one cannot be made locally."""
    hole = harness.Blackhole()
    if not hole.works():
        hole.close()
        pytest.skip("this kernel answers SYNs to a full accept queue; cannot black-hole locally")
    yield hole
    hole.close()
