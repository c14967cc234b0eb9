"""Helpers of the stream end-to-end tests: a gcircusd on free ports with a client, and reading what it wrote."""
from __future__ import annotations

import os
import sys
import textwrap

from gcircus.client import Client, NoDaemonError
from gcircus.consumer import Consumer
from tests.support.children import stream_writer as child
from tests.support.ports import free_port
from tests.support.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # gcircusd's cwd: imports tests.*
CHILD = f"{sys.executable} {child.__file__}"


class Running:
    """A gcircusd daemon started on a config, with its endpoints and a client."""

    def __init__(self, daemon, endpoint: str, pubsub: str):
        self.daemon = daemon
        self.endpoint = endpoint
        self.pubsub = pubsub
        self.client = Client(endpoint, timeout=5)

    def call(self, command: str, **props) -> dict:
        return self.client.call(command, check=True, **props)

    def pids(self, watcher: str) -> list[int]:
        return sorted(int(pid) for pid in self.call("list", name=watcher)["pids"])

    def consumer(self, topic: str) -> Consumer:
        return Consumer([topic.encode()], endpoint=self.pubsub, timeout=0.1)


class Launcher:
    """Starts gcircusd daemons (through the daemon_factory fixture, which stops them) and closes their clients."""

    def __init__(self, tmp_path, daemon_factory):
        self.tmp_path = tmp_path
        self.daemon_factory = daemon_factory
        self.started: list[Running] = []

    def __call__(self, watchers: str, circus: str = "", started: bool = True, **kwargs) -> Running:
        """Start gcircusd on [circus] (free ports, plus `circus` lines) and the dedented `watchers` sections; return
        once it answers and (with `started`) has started its watchers, each ready (it logs so)."""
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        pubsub = f"tcp://127.0.0.1:{free_port()}"
        text = (f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = {pubsub}\n{textwrap.dedent(circus)}\n"
                + textwrap.dedent(watchers))
        path = self.tmp_path / "circus.ini"
        path.write_text(text)
        running = Running(self.daemon_factory(str(path), cwd=REPO, **kwargs), endpoint, pubsub)
        self.started.append(running)
        wait_for(lambda: _answers(running), message="gcircusd answering")
        if started:  # it answers while its watchers start: tests read their pids once the start is through
            wait_for(lambda: "gcircusd running" in running.daemon.output(), timeout=60, message="the watchers started")
        return running

    def close(self) -> None:
        for running in self.started:
            running.client.close()


def _answers(running: Running) -> bool:
    if running.daemon.proc.poll() is not None:
        raise AssertionError(f"gcircusd exited:\n{running.daemon.output()}")
    try:
        running.client.call("status")
    except NoDaemonError:
        return False
    return True


def read(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def file_holds(path, expected: bytes):
    """A wait_for predicate: `path` holds exactly `expected` (fails at once if it holds something else)."""
    def check():
        data = read(path)
        assert expected.startswith(data), f"{path}: unexpected content at byte {diff_at(data, expected)}"
        return data == expected
    return check


def diff_at(data: bytes, expected: bytes) -> int:
    return next((i for i, (a, b) in enumerate(zip(data, expected)) if a != b), min(len(data), len(expected)))
