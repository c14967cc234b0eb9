"""--daemon: the launching command returns once the detached daemon runs, or fails with the daemon's reason."""
from __future__ import annotations

import os
import signal

from gcircus import linux
from tests.support.daemons import launch_detached, make_config, marker_config, read_pid, started, stop_detached
from tests.support.processes import alive
from tests.support.waiting import wait_for


def test_daemon_detaches_runs_its_children_and_stops_on_sigterm(tmp_path):
    pidfile = tmp_path / "gcircusd.pid"
    log = tmp_path / "gcircusd.log"
    config = make_config(tmp_path, """
        [watcher:web]
        cmd = /bin/sleep 1000
        numprocesses = 2
        graceful_timeout = 2
        """)
    result = launch_detached("--pidfile", str(pidfile), "--log-output", str(log), config)
    pid = read_pid(pidfile)
    try:
        assert result.returncode == 0, result.stderr
        assert result.stdout == result.stderr == ""
        assert pid is not None and alive(pid)
        # Returned only once the watchers started: the children are there already, no waiting needed.
        children = [p for p in linux.children(pid) if alive(p)]
        assert len(children) == 2
        assert os.getsid(pid) != os.getsid(0)
        assert os.getsid(pid) != pid  # double fork: not a session leader, so it can never get a terminal back
        assert all(os.readlink(f"/proc/{pid}/fd/{fd}") == os.devnull for fd in (0, 1, 2))
        # The log is written by its own thread: the line may land just after the launcher returned.
        wait_for(lambda: "gcircusd running" in log.read_text(), message="the running line in the log")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), message="daemon stopped")
        assert not any(alive(p) for p in children)
        assert not pidfile.exists()
        assert "gcircusd stopped" in log.read_text()
    finally:
        if pid is not None:
            stop_detached(pid)


def test_daemon_start_failure_is_reported_by_the_launching_command(tmp_path, daemon_factory):
    pidfile = tmp_path / "gcircusd.pid"
    first_config, _ = marker_config(tmp_path, "first.ini")
    first = daemon_factory(first_config, "--pidfile", str(pidfile))
    started(first, 1)
    second_config, second_marker = marker_config(tmp_path, "second.ini")
    result = launch_detached("--pidfile", str(pidfile), second_config)
    assert result.returncode == 1
    assert f"pid {first.pid}" in result.stderr
    assert not second_marker.exists()
    assert read_pid(pidfile) == first.pid


def test_daemon_without_pidfile_is_found_through_its_children(tmp_path):
    record = tmp_path / "ppid"
    config = make_config(tmp_path, f"""
        [watcher:web]
        cmd = sh -c 'echo $PPID > {record}; exec sleep 1000'
        """)
    result = launch_detached(config)
    pid = None
    try:
        assert result.returncode == 0, result.stderr
        pid = int(wait_for(lambda: record.exists() and record.read_text().strip(), message="child started"))
        assert os.getsid(pid) != os.getsid(0)
    finally:
        if pid is not None:
            stop_detached(pid)
