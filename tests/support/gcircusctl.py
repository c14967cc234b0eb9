"""Shared by the client and gcircusctl tests: a real gcircusd on free ports, ready to answer, and gcircusctl's
command line with the developer's endpoint variables left out."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from gcircus.client import CallError, Client
from tests.support.daemons import write_config
from tests.support.ports import free_port
from tests.support.waiting import wait_for

GCIRCUSCTL = [sys.executable, "-m", "gcircus.cli.gcircusctl"]
ENDPOINT_VARIABLES = ("GCIRCUSCTL_ENDPOINT", "CIRCUSCTL_ENDPOINT")  # the developer's own must not steer the tests


@dataclass
class Running:
    """A started gcircusd with its config path and both endpoints."""

    daemon: object
    config: str
    endpoint: str
    pubsub: str

    def call(self, command: str, **props) -> dict:
        with Client(self.endpoint, timeout=5) as client:
            return client.call(command, **props)

    def pids(self) -> list[int]:
        return self.call("list", name="sleeper")["pids"]


def start_sleepers(daemon_factory, tmp_path, numprocesses: int = 2, extra: str = "") -> Running:
    """gcircusd with one `sleeper` watcher; returns once it answers and its processes run."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pubsub = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = {endpoint}
        pubsub_endpoint = {pubsub}

        [watcher:sleeper]
        cmd = sleep 1000
        numprocesses = {numprocesses}
        graceful_timeout = 2
        {extra}
        """)
    running = Running(daemon_factory(config), config, endpoint, pubsub)

    def ready():
        if running.daemon.proc.poll() is not None:
            raise AssertionError(f"gcircusd exited: {running.daemon.output()}")
        try:
            return running.call("status", name="sleeper").get("status") == "active" and \
                len(running.pids()) == numprocesses
        except CallError:
            return False
    wait_for(ready, message="gcircusd to answer with its watcher active")
    return running


def ctl_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENDPOINT_VARIABLES}
    env.update(extra)
    return env
