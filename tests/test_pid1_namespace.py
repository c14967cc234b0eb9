"""gcircusd as PID 1 of a PID namespace (a container's init), for real: `unshare --pid --fork --mount-proc`.

It reaps the orphans the kernel re-parents to it, stops everything on SIGTERM and exits 0, stops everything and
exits 3 when an essential watcher fails, and keeps a shutdown within [circus] stop_timeout (exit 4).
The kernel kills what is left of a namespace once its init exits, so the tests check how each process ended (a
SIGTERM trap records it) rather than only that the namespace is empty afterwards.
"""
from __future__ import annotations

import signal

import pytest

from gcircus.daemon import EXIT_ESSENTIAL_FAILED, EXIT_OK, EXIT_STOP_TIMEOUT
from tests.support.daemons import make_config
from tests.support.pidns import gcircusd_as_pid1, pid_inside, unavailable
from tests.support.processes import IGNORE_TERM, alive, ignores_term
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


@pytest.fixture
def pid1(tmp_path):
    """Start gcircusd as PID 1 of a new PID namespace: pid1(config) -> PidNamespace; all of it is killed after."""
    started = []

    def start(config: str):
        namespace = gcircusd_as_pid1(config, tmp_path / "gcircusd.out")
        started.append(namespace)
        assert pid_inside(namespace.init) == 1
        return namespace

    yield start
    for namespace in started:
        namespace.close()


def trapping(name: str, record, ready) -> str:
    """A shell loop that appends `name` to `ready` once it traps SIGTERM, and to `record` when it gets it (then
    exits 0)."""
    return (f"""sh -c 'trap "echo {name} >> {record}; exit 0" TERM; echo {name} >> {ready}; """
            f"""while :; do sleep 0.1; done'""")


def write_script(path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def double_forker(tmp_path, grandchild: str) -> str:
    """A program that forks twice so `grandchild` (shell text) is orphaned at once, then runs on (sleep)."""
    return write_script(tmp_path / "double-fork.sh", f"#!/bin/sh\n( {grandchild} & )\nexec sleep 1000\n")


def recorded(record) -> list[str]:
    return record.read_text().split() if record.exists() else []


def test_orphans_that_exit_leave_no_zombie(tmp_path, pid1):
    born = tmp_path / "born"
    script = double_forker(tmp_path, f"sh -c 'echo $$ >> {born}'")
    config = make_config(tmp_path, f"""
        [watcher:forker]
        cmd = {script}
        numprocesses = 3
        """)
    namespace = pid1(config)
    wait_for(lambda: len(recorded(born)) == 3, 30, message="three grandchildren born")
    # gcircusd, its three sleeps, nothing else: each orphan was reaped once it exited (a zombie would stay listed).
    wait_for(lambda: len(namespace.members()) == 4 and not namespace.zombies(), 30,
             message="no zombie left (gcircusd and its three sleeps only)")
    assert namespace.zombies() == []
    namespace.signal_init(signal.SIGTERM)
    assert namespace.wait() == EXIT_OK


def test_sigterm_stops_every_process_gracefully_and_exits_0(tmp_path, pid1):
    record, ready = tmp_path / "stopped", tmp_path / "ready"
    script = double_forker(tmp_path, trapping("orphan", record, ready))
    config = make_config(tmp_path, f"""
        [watcher:web]
        cmd = {trapping("web", record, ready)}
        numprocesses = 2
        graceful_timeout = 30

        [watcher:forker]
        cmd = {script}
        graceful_timeout = 30
        """)
    namespace = pid1(config)
    wait_for(lambda: sorted(recorded(ready)) == ["orphan", "web", "web"], 30, message="every loop trapping SIGTERM")
    members = list(namespace.members())
    namespace.signal_init(signal.SIGTERM)
    assert namespace.wait() == EXIT_OK, namespace.output()
    # Each loop was stopped by gcircusd's SIGTERM (the kernel's SIGKILL of a namespace cannot be trapped).
    assert sorted(recorded(record)) == ["orphan", "web", "web"], namespace.output()
    assert not any(alive(pid) for pid in members)
    assert namespace.members() == {}


def test_an_essential_watchers_crash_loop_stops_everything_and_exits_3(tmp_path, pid1):
    record, ready = tmp_path / "stopped", tmp_path / "ready"
    config = make_config(tmp_path, f"""
        [watcher:web]
        cmd = {trapping("web", record, ready)}
        graceful_timeout = 30

        [watcher:worker]
        essential = true
        cmd = sh -c 'until [ -e {ready} ]; do sleep 0.05; done; exit 7'
        flapping.attempts = 2
        flapping.window = 30
        flapping.retry_in = 0.1
        flapping.max_retry = 1
        """)
    namespace = pid1(config)
    assert namespace.wait() == EXIT_ESSENTIAL_FAILED, namespace.output()
    assert "essential watcher 'worker' failed" in namespace.output()
    assert recorded(record) == ["web"]  # stopped gracefully, by gcircusd
    assert namespace.members() == {}


def test_stop_timeout_kills_what_ignores_sigterm_and_exits_4(tmp_path, pid1):
    config = make_config(tmp_path, f"""
        [watcher:stubborn]
        cmd = {IGNORE_TERM}
        graceful_timeout = 3600
        """, circus="stop_timeout = 1\n")
    namespace = pid1(config)
    wait_for(lambda: "gcircusd running" in namespace.output(), 30, message="gcircusd running")
    stubborn = wait_for(lambda: [pid for pid in namespace.members() if pid != namespace.init and ignores_term(pid)],
                        30, message="a child that ignores SIGTERM")
    namespace.signal_init(signal.SIGTERM)
    assert namespace.wait() == EXIT_STOP_TIMEOUT, namespace.output()
    assert "outlasted stop_timeout (1s): killing every process left" in namespace.output()
    assert not any(alive(pid) for pid in stubborn)
