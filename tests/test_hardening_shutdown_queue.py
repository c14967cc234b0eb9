"""A shutdown never waits behind queued commands (issue 10): SIGTERM, `quit` and a second SIGINT preempt them.

Twenty `restart --waiting` are queued on a watcher that is slow to stop; the shutdown cancels them with an error
reply instead of running them one after the other (which took minutes, spawning a process per restart).
"""
from __future__ import annotations

import json
import signal
import textwrap
import uuid

import pytest
import zmq

from tests.conftest import alive, free_port, running_own_program, wait_for

QUEUED = 20


def make_config(tmp_path, watcher: str) -> tuple[str, str]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    path = tmp_path / "circus.ini"
    path.write_text(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n\n"
                    + textwrap.dedent(watcher))
    return str(path), endpoint


class Dealer:
    """A raw DEALER that pipelines requests and collects replies by id."""

    def __init__(self, endpoint: str):
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(endpoint)
        self.replies: dict[str, dict] = {}

    def send(self, command: str, **properties) -> str:
        msg_id = uuid.uuid4().hex
        self.socket.send(json.dumps({"id": msg_id, "command": command, "properties": properties}).encode())
        return msg_id

    def collect(self, ids, timeout: float = 30.0) -> list[dict]:
        """The replies to `ids`, in order; AssertionError if one does not come within `timeout`."""
        def all_in():
            while self.socket.poll(0):
                reply = json.loads(self.socket.recv())
                self.replies[reply["id"]] = reply
            return all(i in self.replies for i in ids)
        wait_for(all_in, timeout, interval=0.02, message=f"{len(ids)} replies")
        return [self.replies[i] for i in ids]

    def call(self, command: str, **properties) -> dict:
        return self.collect([self.send(command, **properties)])[0]

    def close(self) -> None:
        self.socket.close(linger=0)


def spawned(record) -> list[str]:
    return record.read_text().split() if record.exists() else []


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
    config, endpoint = make_config(tmp_path, f"""
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
    config, endpoint = make_config(tmp_path, f"""
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
