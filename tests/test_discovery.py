"""Multicast discovery: off unless configured; when on, any datagram gets the control endpoint back."""
from __future__ import annotations

import json
import socket

import pytest
from gevent import socket as gsocket

from gcircus.control.discovery import DiscoveryError, DiscoveryResponder, parse_multicast_endpoint
from tests.support.ports import free_port


def test_endpoint_must_be_an_ipv4_multicast_group():
    assert parse_multicast_endpoint("udp://237.219.251.97:12027") == ("237.219.251.97", 12027)
    for bad in ("udp://10.0.0.1:12027", "udp://237.219.251.97", "tcp://237.219.251.97:1", "udp://host:1"):
        with pytest.raises(DiscoveryError):
            parse_multicast_endpoint(bad)


def test_responder_answers_a_probe_with_the_control_endpoint():
    port = free_port()
    responder = DiscoveryResponder(f"udp://237.219.251.97:{port}", "tcp://127.0.0.1:5555")
    try:
        responder.start()
    except OSError as exc:
        pytest.skip(f"no multicast membership possible in this network namespace: {exc}")
    probe = gsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.settimeout(5)
        probe.sendto(b"anyone?", ("127.0.0.1", port))  # unicast to the port works too
        data, _ = probe.recvfrom(1024)
        assert json.loads(data) == {"endpoint": "tcp://127.0.0.1:5555"}
    finally:
        probe.close()
        responder.close()


def test_daemon_answers_discovery_only_when_configured(tmp_path, daemon_factory):
    from tests.support.daemons import write_config
    from tests.support.waiting import wait_for

    control = f"tcp://127.0.0.1:{free_port()}"
    port = free_port()
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = {control}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}
        multicast_endpoint = udp://237.219.251.97:{port}

        [watcher:w]
        cmd = /bin/sleep 1000
    """)
    daemon = daemon_factory(config)
    wait_for(lambda: "gcircusd running" in daemon.output(), message="daemon up")
    if "multicast discovery is disabled" in daemon.output():
        pytest.skip("no multicast membership possible in this network namespace")
    probe = gsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.settimeout(5)
        probe.sendto(b"?", ("127.0.0.1", port))
        assert json.loads(probe.recvfrom(1024)[0]) == {"endpoint": control}
    finally:
        probe.close()


def test_bad_multicast_endpoint_is_a_config_error(tmp_path):
    from gcircus.daemon import Arbiter
    from gcircus.errors import ConfigError
    from tests.support.daemons import write_config

    path = write_config(tmp_path / "circus.ini", """
        [circus]
        multicast_endpoint = udp://10.1.2.3:12027

        [watcher:w]
        cmd = /bin/sleep 1000
    """)
    with pytest.raises(ConfigError, match="multicast_endpoint"):
        Arbiter.load_from_config(path)
