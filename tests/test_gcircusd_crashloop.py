"""Services that crash at once or cannot be spawned: gcircusd must not spin, flood its log, or fail to stop."""
from __future__ import annotations

import os
import signal
import time

import gevent
import pytest
from gevent import subprocess as gsubprocess

from gcircus import linux
from tests.support.daemons import make_config
from tests.support.waiting import wait_for

OBSERVATION = 1.5  # seconds of crash loop observed
MAX_CPU_SHARE = 0.25  # of one core, over the observation
MAX_LOG_LINES = 20  # over the observation


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time consumed so far by `pid`."""
    stat = linux.read_stat(pid)
    return (stat.utime + stat.stime) / os.sysconf("SC_CLK_TCK")


def observe(daemon, duration: float) -> tuple[float, int]:
    """Watch the running daemon for `duration`: return (its CPU share of one core, log lines it wrote meanwhile)."""
    lines_before = len(daemon.output().splitlines())
    cpu_before, began = cpu_seconds(daemon.pid), time.monotonic()
    while time.monotonic() - began < duration:
        assert daemon.proc.poll() is None, "gcircusd exited during the crash loop"
        gevent.sleep(0.05)
    share = (cpu_seconds(daemon.pid) - cpu_before) / (time.monotonic() - began)
    return share, len(daemon.output().splitlines()) - lines_before


@pytest.mark.parametrize("options", [
    "",
    "check_flapping = false",
    "max_retry = -1",
], ids=["default", "no-flapping-check", "retry-forever"])
def test_crash_loop_does_not_spin(tmp_path, daemon_factory, options):
    config = make_config(tmp_path, f"""
        [watcher:crasher]
        cmd = sh -c 'exit 1'
        {options}
        """)
    daemon = daemon_factory(config)
    wait_for(lambda: "exited with" in daemon.output(), message="first crash")
    share, lines = observe(daemon, OBSERVATION)
    assert share < MAX_CPU_SHARE, f"gcircusd used {share:.0%} of a core"
    assert lines < MAX_LOG_LINES, daemon.output()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert daemon.children() == []


@pytest.mark.parametrize("options", ["", "max_retry = -1"], ids=["default", "retry-forever"])
def test_unspawnable_command_does_not_spin(tmp_path, daemon_factory, options):
    config = make_config(tmp_path, f"""
        [watcher:missing]
        cmd = /nonexistent/cmd
        {options}

        [watcher:fine]
        cmd = /bin/sleep 1000
        """)
    daemon = daemon_factory(config)
    wait_for(lambda: "cannot spawn" in daemon.output(), message="spawn failure logged")
    assert "/nonexistent/cmd" in daemon.output()
    share, lines = observe(daemon, OBSERVATION)
    assert share < MAX_CPU_SHARE, f"gcircusd used {share:.0%} of a core"
    assert lines < MAX_LOG_LINES, daemon.output()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0


def test_daemon_whose_watchers_all_gave_up_still_waits_and_stops_cleanly(tmp_path, daemon_factory):
    config = make_config(tmp_path, """
        [watcher:missing]
        cmd = /nonexistent/cmd
        max_retry = 1
        """)
    daemon = daemon_factory(config)
    wait_for(lambda: "giving up" in daemon.output(), message="watcher gave up")
    # With no child and no timer left, only the stop signal may end the daemon.
    with pytest.raises(gsubprocess.TimeoutExpired):
        daemon.wait(0.5)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert "crashed" not in daemon.output()
