"""Fixtures shared by the test modules; pytest finds them here, so no test module imports another or this one.

Helpers live in tests/support/ (see its __init__); tests.support.isolation, loaded below, is the plugin every run
needs: the child subreaper, default stop signals for children, and the autouse leak check.
"""
from __future__ import annotations

import subprocess

import pytest
import zmq

from gcircus.daemon import Arbiter
from gcircus.watcher import Watcher
from tests.support.control import Client
from tests.support.daemons import Daemon, ReloadSetup
from tests.support.gcircusctl import ENDPOINT_VARIABLES, Running, start_sleepers
from tests.support.ports import free_port
from tests.support.recorders import ArbiterRecorder
from tests.support.streams import Launcher

pytest_plugins = ["tests.support.isolation"]


@pytest.fixture(autouse=True)
def no_endpoint_variables(monkeypatch):
    """The developer's own GCIRCUSCTL_ENDPOINT must not steer the tests."""
    for name in ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def daemon_factory():
    """Start gcircusd daemons; every one still running at the end of the test is stopped (SIGTERM, then SIGKILL)."""
    started: list[Daemon] = []

    def start(config: str, *args: str, **kwargs) -> Daemon:
        daemon = Daemon(str(config), *args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.terminate()


@pytest.fixture
def running(daemon_factory, tmp_path) -> Running:
    """A gcircusd with two `sleeper` processes, answering (tests.support.gcircusctl.start_sleepers)."""
    return start_sleepers(daemon_factory, tmp_path)


@pytest.fixture
def silent_router():
    """A ROUTER bound on a free port that receives requests and never answers; yields (endpoint, socket)."""
    context = zmq.Context.instance()
    sock = context.socket(zmq.ROUTER)
    sock.linger = 0
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield f"tcp://127.0.0.1:{port}", sock
    sock.close()


@pytest.fixture
def gcircusd(tmp_path, daemon_factory):
    """`gcircusd(watchers, circus="", **daemon_kwargs)` starts a daemon and returns its Running (support.streams)."""
    launcher = Launcher(tmp_path, daemon_factory)
    yield launcher
    launcher.close()


@pytest.fixture
def tiny_disk(tmp_path):
    """A directory on a 64 KiB tmpfs, unmounted after the test (skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root, or a user namespace allowing it)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.fixture
def setup(tmp_path, daemon_factory):
    """A gcircusd on a config the test rewrites between reloadconfig calls (support.daemons.ReloadSetup)."""
    s = ReloadSetup(tmp_path, daemon_factory)
    yield s
    s.close()


@pytest.fixture
def make_arbiter():
    """Start an Arbiter with a control endpoint on a free port; returns (arbiter, client, recorder)."""
    made: list[tuple[Arbiter, list[Client]]] = []

    def make(*watchers: dict, **kwargs):
        built = [Watcher(**{"graceful_timeout": 5, **spec}) for spec in watchers]
        arbiter = Arbiter(built, endpoint=f"tcp://127.0.0.1:{free_port()}", **kwargs)
        recorder = ArbiterRecorder(arbiter)
        arbiter.start(background=True)
        clients = [Client(arbiter.endpoint)]
        made.append((arbiter, clients))

        def new_client() -> Client:
            clients.append(Client(arbiter.endpoint))
            return clients[-1]
        arbiter.new_client = new_client
        return arbiter, clients[0], recorder

    yield make
    for arbiter, clients in made:
        for client in clients:
            client.close()
        arbiter.stop(graceful=False)
        arbiter.wait_channels_closed(5)
