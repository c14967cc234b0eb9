"""Safety of the channels: private ipc sockets, loopback-only TCP unless opted in, discovery off by default."""
from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys

import pytest
import zmq

from gcircus.daemon import Arbiter
from gcircus.errors import ConfigError
from tests.support.daemons import write_config
from tests.support.ports import free_port
from tests.support.waiting import wait_for


def _call(endpoint: str, command: str, **props) -> dict:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    try:
        import json
        sock.send(json.dumps({"id": "x", "command": command, "properties": props}).encode())
        assert sock.poll(5000), "no reply"
        return json.loads(sock.recv())
    finally:
        sock.close()


def test_ipc_endpoints_are_private_to_the_owner(tmp_path, daemon_factory):
    control, events = tmp_path / "control.sock", tmp_path / "events.sock"
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = ipc://{control}
        pubsub_endpoint = ipc://{events}

        [watcher:w]
        cmd = /bin/sleep 1000
    """)
    daemon = daemon_factory(config)
    wait_for(lambda: "gcircusd running" in daemon.output(), message="daemon up")
    for path in (control, events):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert _call(f"ipc://{control}", "list")["watchers"] == ["w"]
    daemon.stop()
    assert not control.exists() and not events.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_endpoint_owner_owns_the_ipc_socket(tmp_path, daemon_factory):
    control = tmp_path / "control.sock"
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = ipc://{control}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}
        endpoint_owner = nobody

        [watcher:w]
        cmd = /bin/sleep 1000
    """)
    daemon = daemon_factory(config)
    wait_for(lambda: "gcircusd running" in daemon.output(), message="daemon up")
    assert os.stat(control).st_uid == pwd.getpwnam("nobody").pw_uid
    assert stat.S_IMODE(os.stat(control).st_mode) == 0o600


@pytest.mark.parametrize("option", ["endpoint", "pubsub_endpoint"])
def test_non_loopback_tcp_endpoint_is_refused_with_the_way_out(tmp_path, option):
    other = "pubsub_endpoint" if option == "endpoint" else "endpoint"
    path = write_config(tmp_path / "circus.ini", f"""
        [circus]
        {option} = tcp://0.0.0.0:{free_port()}
        {other} = tcp://127.0.0.1:{free_port()}

        [watcher:w]
        cmd = /bin/sleep 1000
    """)
    with pytest.raises(ConfigError) as info:
        Arbiter.load_from_config(path)
    message = str(info.value)
    assert option in message and "allow_remote_endpoints = true" in message
    result = subprocess.run([sys.executable, "-m", "gcircus.cli.gcircusd", path], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and "allow_remote_endpoints" in result.stderr


def test_opting_in_allows_a_non_loopback_bind(tmp_path, daemon_factory):
    port = free_port()
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = tcp://0.0.0.0:{port}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}
        allow_remote_endpoints = true

        [watcher:w]
        cmd = /bin/sleep 1000
    """)
    daemon = daemon_factory(config)
    wait_for(lambda: "gcircusd running" in daemon.output(), message="daemon up")
    assert _call(f"tcp://127.0.0.1:{port}", "status", name="w")["status"] == "active"


def test_multicast_discovery_is_off_by_default(tmp_path):
    path = write_config(tmp_path / "circus.ini", """
        [watcher:w]
        cmd = /bin/sleep 1000
    """)
    arbiter = Arbiter.load_from_config(path)
    assert arbiter.multicast_endpoint is None


def test_a_malformed_endpoint_is_a_config_error_naming_the_option(tmp_path):
    path = write_config(tmp_path / "circus.ini", """
        [circus]
        endpoint = tcp://127.0.0.1:notaport

        [watcher:w]
        cmd = /bin/sleep 1000
    """)
    with pytest.raises(ConfigError) as info:
        Arbiter.load_from_config(path)
    assert info.value.option == "endpoint" and "notaport" in str(info.value)
