"""Shared by the client and gcircusctl tests: a real gcircusd on free ports, ready to answer, and a silent ROUTER."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pytest
import zmq

from gcircus.client import CallError, Client
from tests.conftest import free_port, wait_for, write_config

GCIRCUSCTL = [sys.executable, "-m", "gcircus.cli.gcircusctl"]


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


def start_daemon(daemon_factory, tmp_path, numprocesses: int = 2, extra: str = "") -> Running:
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


@pytest.fixture
def running(daemon_factory, tmp_path) -> Running:
    return start_daemon(daemon_factory, tmp_path)


@pytest.fixture
def silent_router():
    """A ROUTER bound on a free port that receives requests and never answers; yields (endpoint, socket)."""
    context = zmq.Context.instance()
    sock = context.socket(zmq.ROUTER)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield f"tcp://127.0.0.1:{port}", sock
    sock.close()


@pytest.fixture(autouse=True)
def no_endpoint_variables(monkeypatch):
    """The developer's own GCIRCUSCTL_ENDPOINT must not steer the tests."""
    for name in ("GCIRCUSCTL_ENDPOINT", "CIRCUSCTL_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def ctl_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GCIRCUSCTL_ENDPOINT", "CIRCUSCTL_ENDPOINT")}
    env.update(extra)
    return env
