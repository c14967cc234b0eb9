"""The pytest plugin every test run loads (tests/conftest.py names it in pytest_plugins): isolation of the tests.

The test process makes itself a child subreaper, so even daemonized gcircusd processes (double-forked away) and
their children stay in its process tree: after every test, anything it started that is still alive is killed by
pid and the test fails, so a leaking code path cannot hide.
"""
from __future__ import annotations

import signal
import time

import gevent
import pytest

from gcircus import linux
from tests.support.processes import kill, live_descendants

linux.set_child_subreaper(True)


def _restore_default_stop_signals() -> None:
    """Children must start with SIGINT and SIGQUIT at their defaults, whatever started the test run.

    A shell runs a background job (`scripts/test &`, a CI step) with both ignored, an ignored signal stays ignored
    across fork and exec, and every test that stops a child with SIGINT would then wait for a stop that never comes.
    A handler (unlike SIG_IGN) is reset to the default by exec.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


_restore_default_stop_signals()


@pytest.fixture(autouse=True)
def no_leaked_processes():
    """Fail any test that leaves a process it started running; kill the leftovers by pid either way."""
    before = set(live_descendants())
    yield
    leaked = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leaked = [pid for pid in live_descendants() if pid not in before]
        if not leaked:
            break
        gevent.sleep(0.02)
    kill(leaked)
    if leaked:
        pytest.fail(f"test left processes running: {leaked}")
