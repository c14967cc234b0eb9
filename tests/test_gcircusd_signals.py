"""gcircusd running a plain Circus config: its children, and what TERM, INT, QUIT and HUP do to them."""
from __future__ import annotations

import signal
import time

import pytest
from gevent import subprocess as gsubprocess

from tests.support.daemons import make_config, started
from tests.support.processes import alive, handles
from tests.support.waiting import wait_for


def started_handling(daemon, count: int, signum: int = signal.SIGTERM) -> list[int]:
    """Like started(), and also wait until every child has installed its handler for `signum`."""
    pids = started(daemon, count)
    wait_for(lambda: all(handles(pid, signum) for pid in pids), message="signal handlers installed")
    return pids


def trapping(name: str, record) -> str:
    """A shell command that appends `name` to `record` when it gets SIGTERM, then exits 0."""
    return f"""sh -c 'trap "echo {name} >> {record}; exit 0" TERM; while :; do sleep 0.1; done'"""


# A process that ignores SIGTERM (ignored dispositions survive exec), so only SIGKILL ends it.
IGNORES_TERM = """sh -c 'trap "" TERM; exec sleep 1000'"""


def test_plain_config_runs_every_watcher(tmp_path, daemon_factory):
    config = make_config(tmp_path, """
        [watcher:web]
        cmd = /bin/sleep 1000
        numprocesses = 3
        priority = 1

        [watcher:worker]
        cmd = /bin/sleep 1000
        numprocesses = 2
        priority = 5

        [watcher:single]
        cmd = /bin/sleep 1000
        """)
    daemon = daemon_factory(config)
    pids = started(daemon, 6)
    assert all(alive(pid) for pid in pids)
    output = daemon.output()
    assert "3 watchers, 6 processes" in output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_stops_every_child_lowest_priority_first(tmp_path, daemon_factory, signum):
    record = tmp_path / "stopped"
    config = make_config(tmp_path, f"""
        [watcher:high]
        cmd = {trapping("high", record)}
        priority = 10
        graceful_timeout = 5

        [watcher:low]
        cmd = {trapping("low", record)}
        priority = 1
        graceful_timeout = 5

        [watcher:middle]
        cmd = {trapping("middle", record)}
        numprocesses = 2
        priority = 5
        graceful_timeout = 5
        """)
    daemon = daemon_factory(config)
    pids = started_handling(daemon, 4)
    daemon.signal(signum)
    assert daemon.wait(10) == 0
    assert not any(alive(pid) for pid in pids)
    assert record.read_text().split() == ["low", "middle", "middle", "high"]
    assert f"received {signal.Signals(signum).name}" in daemon.output()


def test_start_order_is_highest_priority_first(tmp_path, daemon_factory):
    record = tmp_path / "started"
    config = make_config(tmp_path, f"""
        [watcher:low]
        cmd = sh -c 'echo low $$ >> {record}; exec sleep 1000'
        priority = 1

        [watcher:high]
        cmd = sh -c 'echo high $$ >> {record}; exec sleep 1000'
        priority = 10
        """)
    daemon = daemon_factory(config)
    started(daemon, 2)
    wait_for(lambda: record.exists() and len(record.read_text().split()) == 4, message="both started")
    # The children write in whatever order the scheduler runs them; the spawn order shows in their pids, which
    # the kernel hands out in increasing order.
    pids = dict(line.split() for line in record.read_text().splitlines())
    assert int(pids["high"]) < int(pids["low"])


def test_second_sigint_kills_a_child_that_ignores_sigterm(tmp_path, daemon_factory):
    config = make_config(tmp_path, f"""
        [watcher:stubborn]
        cmd = {IGNORES_TERM}
        graceful_timeout = 60
        """)
    daemon = daemon_factory(config)
    [pid] = started_handling(daemon, 1)
    daemon.signal(signal.SIGINT)
    wait_for(lambda: "received SIGINT" in daemon.output(), message="first SIGINT logged")
    # The graceful period holds: the child ignores SIGTERM, so nothing exits on its own.
    with pytest.raises(gsubprocess.TimeoutExpired):
        daemon.wait(0.5)
    assert alive(pid)
    began = time.monotonic()
    daemon.signal(signal.SIGINT)
    assert daemon.wait(60) == 0
    assert time.monotonic() - began < 30  # long before the 60 s graceful_timeout
    assert not alive(pid)
    assert "killing every process now" in daemon.output()


def test_sigquit_stops_without_grace(tmp_path, daemon_factory):
    config = make_config(tmp_path, f"""
        [watcher:stubborn]
        cmd = {IGNORES_TERM}
        numprocesses = 2
        graceful_timeout = 60

        [watcher:plain]
        cmd = /bin/sleep 1000
        graceful_timeout = 60
        """)
    daemon = daemon_factory(config)
    pids = started(daemon, 3)
    began = time.monotonic()
    daemon.signal(signal.SIGQUIT)
    assert daemon.wait(60) == 0
    assert time.monotonic() - began < 30  # long before the 60 s graceful_timeout
    assert not any(alive(pid) for pid in pids)


def test_sigterm_interrupts_a_slow_start(tmp_path, daemon_factory):
    config = make_config(tmp_path, """
        [watcher:slow]
        cmd = /bin/sleep 1000
        numprocesses = 5
        warmup_delay = 60
        graceful_timeout = 2
        """)
    daemon = daemon_factory(config)
    # "starting" is logged once the signal handlers are in place (a child seen earlier may be ctypes' ldconfig).
    wait_for(lambda: "starting" in daemon.output(), message="gcircusd starting")
    [first] = wait_for(lambda: daemon.children(), message="first child")
    began = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(60) == 0
    assert time.monotonic() - began < 30  # long before the next 60 s warmup delay ends
    assert not alive(first)
    assert daemon.children() == []
    assert "gcircusd running" not in daemon.output()


def test_sighup_rereads_the_config_and_replaces_changed_children(tmp_path, daemon_factory):
    """SIGHUP does what reloadconfig does (tests/test_reloadconfig.py): here every watcher's cmd changed."""
    config = make_config(tmp_path, """
        [watcher:web]
        cmd = /bin/sleep 1000
        numprocesses = 2
        graceful_timeout = 2

        [watcher:worker]
        cmd = /bin/sleep 1000
        graceful_timeout = 2
        """)
    daemon = daemon_factory(config)
    old = set(started(daemon, 3))
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace("/bin/sleep 1000", "/bin/sleep 1001"))
    daemon.signal(signal.SIGHUP)
    new = wait_for(lambda: (lambda now: len(now) == 3 and not now & old and now)(set(daemon.children())),
                   message="three new children")
    assert not any(alive(pid) for pid in old)
    assert len(new) == 3
    assert "received SIGHUP" in daemon.output()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert not any(alive(pid) for pid in new)
