"""Plugins configured in a Circus ini file run inside gcircusd; a plugin that cannot be loaded is a config error."""
from __future__ import annotations

import socket
import subprocess
import sys

from gevent import socket as gsocket

from tests.support.daemons import write_config
from tests.support.ports import free_port
from tests.support.waiting import wait_for


def test_circus_statsd_plugin_section_runs_unchanged_inside_gcircusd(tmp_path, daemon_factory):
    listener = gsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = tcp://127.0.0.1:{free_port()}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}

        [watcher:web]
        cmd = /bin/sleep 1000

        [plugin:statsd]
        use = circus.plugins.statsd.StatsdEmitter
        host = 127.0.0.1
        port = {port}
        application_name = shop
    """)
    try:
        daemon_factory(config)
        received = set()
        wait_for(lambda: received.add(listener.recv(1024)) or
                 any(b"circus.shop.watcher.web.spawn:1|c" in r for r in received), timeout=10,
                 message="statsd counter for the spawn")
    finally:
        listener.close()


def test_a_plugin_that_cannot_be_imported_stops_gcircusd_at_start(tmp_path):
    marker = tmp_path / "started"
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = tcp://127.0.0.1:{free_port()}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}

        [watcher:web]
        cmd = sh -c 'touch {marker}; sleep 1000'

        [plugin:broken]
        use = no.such.module.Plugin
    """)
    result = subprocess.run([sys.executable, "-m", "gcircus.cli.gcircusd", config], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "plugin:broken" in result.stderr and "no.such.module" in result.stderr
    assert not marker.exists()
