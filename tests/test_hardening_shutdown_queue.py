"""A shutdown never waits behind queued commands (issue 10): SIGTERM, `quit` and a second SIGINT preempt them.

Twenty `restart --waiting` are queued on a watcher that is slow to stop; the shutdown cancels them with an error
reply instead of running them one after the other (which took minutes, spawning a process per restart).
"""
from __future__ import annotations

import signal

import pytest

from tests.support.control import Dealer
from tests.support.daemons import circus_config
from tests.support.processes import alive, running_own_program, spawned
from tests.support.waiting import wait_for

QUEUED = 20


def queue_restarts(daemon, endpoint: str, record) -> tuple[Dealer, list[str]]:
    """Wait for the first process, then queue QUEUED waiting restarts; return once the daemon has taken them all."""
    dealer = Dealer(endpoint)
    wait_for(lambda: daemon.proc.poll() is None and len(spawned(record)) == 1, 30, message="first spawn")
    [pid] = wait_for(daemon.children, 30, message="the child")
    wait_for(lambda: running_own_program(pid), 30, message="the child's exec")
    ids = [dealer.send("restart", name="slow", waiting=True)]
    wait_for(lambda: dealer.call("status", name="slow")["status"] == "stopping", 30, message="first restart runs")
    ids += [dealer.send("restart", name="slow", waiting=True) for _ in range(QUEUED - 1)]
    # Requests of one connection are taken in order: once this is answered, every restart is queued.
    assert dealer.call("status", name="slow")["status"] == "stopping"
    return dealer, ids


# Stops in about 1 s after SIGTERM; records each spawn.
SLOW = """sh -c 'echo $$ >> {record}; trap "sleep 1; exit 0" TERM; while :; do sleep 0.1; done'"""


@pytest.mark.parametrize("how", ["SIGTERM", "quit"])
def test_shutdown_cancels_queued_restarts(tmp_path, daemon_factory, how):
    record = tmp_path / "spawns"
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:slow]
        cmd = {SLOW.format(record=record)}
        """)
    daemon = daemon_factory(config)
    dealer, ids = queue_restarts(daemon, endpoint, record)
    try:
        before = len(spawned(record))
        if how == "SIGTERM":
            daemon.signal(signal.SIGTERM)
        else:
            assert dealer.call("quit")["status"] == "ok"
        replies = dealer.collect(ids)
        assert daemon.wait(30) == 0
    finally:
        dealer.close()
    cancelled = [r for r in replies if r["status"] == "error"]
    # The restart running when the shutdown began may finish; every one queued behind it is cancelled.
    assert len(cancelled) >= QUEUED - 1, replies
    assert all("shutting down" in r["reason"] and r["errno"] == 5 for r in cancelled), cancelled
    assert len(spawned(record)) - before <= 1, "restarts ran after the shutdown began"


def test_second_sigint_kills_with_restarts_queued(tmp_path, daemon_factory):
    record = tmp_path / "spawns"
    # Ignores SIGTERM: only the second SIGINT's SIGKILL ends it (the graceful period is far beyond the deadline).
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:slow]
        cmd = sh -c 'echo $$ >> {record}; trap "" TERM; while :; do sleep 0.1; done'
        graceful_timeout = 120
        """)
    daemon = daemon_factory(config)
    dealer, ids = queue_restarts(daemon, endpoint, record)
    try:
        pids = daemon.children()
        daemon.signal(signal.SIGINT)
        wait_for(lambda: "received SIGINT" in daemon.output(), 30, message="first SIGINT logged")
        daemon.signal(signal.SIGINT)
        assert daemon.wait(30) == 0
        replies = dealer.collect(ids)
    finally:
        dealer.close()
    assert not any(alive(pid) for pid in pids)
    assert sum(r["status"] == "error" for r in replies) >= QUEUED - 1
    assert "killing every process now" in daemon.output()
