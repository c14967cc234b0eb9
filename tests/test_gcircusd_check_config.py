"""`gcircusd --check-config FILE` validates the file and says what it would run, without running, binding or writing
anything: exit 0 for a valid file, 2 with the usual error (file, section, option) for a bad one."""
from __future__ import annotations

import os
import socket

from tests.support.daemons import run_cli, write_config
from tests.support.ports import free_port


def test_a_valid_file_is_described_and_nothing_is_started_bound_or_written(tmp_path):
    port = free_port()
    marker = tmp_path / "started"
    written = [tmp_path / name for name in ("ctl.sock", "events.sock", "gcircusd.pid", "gcircusd.log", "web.out",
                                            "unix.sock")]
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = ipc://{written[0]}
        pubsub_endpoint = ipc://{written[1]}
        pidfile = {written[2]}
        logoutput = {written[3]}

        [watcher:db]
        cmd = sh -c 'touch {marker}; exec sleep 1000'
        ready = tcp:127.0.0.1:{port}

        [watcher:web]
        cmd = python -m http.server
        args = --bind 127.0.0.1 $(circus.sockets.web)
        numprocesses = 3
        depends_on = db
        health = http:http://127.0.0.1:{port}/health
        stdout_stream.class = FileStream
        stdout_stream.filename = {written[4]}

        [watcher:manual]
        cmd = /bin/true
        autostart = false

        [socket:web]
        host = 127.0.0.1
        port = {port}

        [socket:local]
        path = {written[5]}

        [plugin:stats]
        use = circus.plugins.statsd.FullStats
        host = 127.0.0.1
        """)
    done = run_cli("--check-config", config)
    assert done.returncode == 0, done
    assert done.stdout.splitlines() == [
        f"{config}: configuration is valid",
        "",
        "watchers (in start order):",
        "  manual: 1 process: /bin/true",
        "    autostart = false",
        "  db: 1 process: sh -c 'touch " + str(marker) + "; exec sleep 1000'",
        f"    ready = tcp:127.0.0.1:{port}",
        "  web: 3 processes: python -m http.server --bind 127.0.0.1 $(circus.sockets.web)",
        f"    health = http:http://127.0.0.1:{port}/health",
        "    depends_on = db",
        "",
        "sockets:",
        f"  local: {written[5]}",
        f"  web: 127.0.0.1:{port}",
        "",
        "plugins:",
        "  stats: circus.plugins.statsd.FullStats",
    ]
    assert done.stderr == ""
    assert not marker.exists()
    assert [path for path in written if path.exists()] == []
    with socket.socket() as probe:  # the [socket:web] port was never bound: we can take it
        probe.bind(("127.0.0.1", port))


def test_a_bad_file_exits_2_naming_file_section_and_option(tmp_path):
    config = write_config(tmp_path / "circus.ini", """
        [watcher:web]
        cmd = /bin/sleep 1000
        numprocesses = many
        """)
    done = run_cli("--check-config", config)
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"{config}" in done.stderr and "[watcher:web]" in done.stderr and "numprocesses" in done.stderr
    assert "'many'" in done.stderr


def test_a_missing_file_exits_2(tmp_path):
    done = run_cli("--check-config", str(tmp_path / "nope.ini"))
    assert done.returncode == 2
    assert "nope.ini" in done.stderr
    assert not os.listdir(tmp_path)
