"""--pidfile and [circus] pidfile: a locked file with the daemon's pid, refused to a second daemon, removed on exit."""
from __future__ import annotations

import os
import signal

from gevent import subprocess as gsubprocess

from tests.support.daemons import GCIRCUSD, marker_config, read_pid, started
from tests.support.processes import alive
from tests.support.waiting import wait_for


def run_cli(*args: str) -> gsubprocess.CompletedProcess:
    return gsubprocess.run(GCIRCUSD + list(args), stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE, text=True,
                           timeout=15)


def test_pidfile_holds_the_pid_while_running_and_is_removed_on_exit(tmp_path, daemon_factory):
    pidfile = tmp_path / "gcircusd.pid"
    config, marker = marker_config(tmp_path)
    daemon = daemon_factory(config, "--pidfile", str(pidfile))
    started(daemon, 1)
    assert pidfile.read_text() == f"{daemon.pid}\n"
    assert oct(pidfile.stat().st_mode & 0o777) == oct(0o644)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert not pidfile.exists()


def test_second_daemon_with_the_same_pidfile_is_refused(tmp_path, daemon_factory):
    pidfile = tmp_path / "gcircusd.pid"
    first_config, _ = marker_config(tmp_path, "first.ini")
    first = daemon_factory(first_config, "--pidfile", str(pidfile))
    started(first, 1)
    second_config, second_marker = marker_config(tmp_path, "second.ini")
    result = run_cli(second_config, "--pidfile", str(pidfile))
    assert result.returncode == 1
    assert str(pidfile) in result.stderr
    assert f"pid {first.pid}" in result.stderr
    assert not second_marker.exists()
    assert read_pid(pidfile) == first.pid  # the refused daemon neither rewrote nor removed it
    assert first.proc.poll() is None


def test_stale_pidfile_of_a_dead_process_is_taken_over(tmp_path, daemon_factory):
    dead = gsubprocess.Popen(["true"])
    dead.wait()
    pidfile = tmp_path / "gcircusd.pid"
    pidfile.write_text(f"{dead.pid}\n")
    config, _ = marker_config(tmp_path)
    daemon = daemon_factory(config, "--pidfile", str(pidfile))
    started(daemon, 1)
    assert read_pid(pidfile) == daemon.pid


def test_unlocked_pidfile_naming_a_live_process_is_taken_over(tmp_path, daemon_factory):
    """The lock, not the pid written in the file, tells whether a daemon runs (pids get reused)."""
    pidfile = tmp_path / "gcircusd.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    config, _ = marker_config(tmp_path)
    daemon = daemon_factory(config, "--pidfile", str(pidfile))
    started(daemon, 1)
    assert read_pid(pidfile) == daemon.pid


def test_pidfile_in_a_missing_directory_fails_clearly(tmp_path):
    pidfile = tmp_path / "no" / "such" / "dir" / "gcircusd.pid"
    config, marker = marker_config(tmp_path)
    result = run_cli(config, "--pidfile", str(pidfile))
    assert result.returncode == 1
    assert str(pidfile.parent) in result.stderr
    assert "does not exist" in result.stderr
    assert not marker.exists()


def test_config_pidfile_is_used_and_the_command_line_wins(tmp_path, daemon_factory):
    from_config = tmp_path / "from-config.pid"
    config, _ = marker_config(tmp_path, circus=f"pidfile = {from_config}")
    daemon = daemon_factory(config)
    started(daemon, 1)
    assert read_pid(from_config) == daemon.pid
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert not from_config.exists()

    from_cli = tmp_path / "from-cli.pid"
    daemon = daemon_factory(config, "--pidfile", str(from_cli))
    started(daemon, 1)
    assert read_pid(from_cli) == daemon.pid
    assert not from_config.exists()


def test_pidfile_is_free_again_after_gcircusd_is_killed(tmp_path, daemon_factory):
    """The lock dies with the daemon even when its children survive it (they never inherit the pidfile)."""
    pidfile = tmp_path / "gcircusd.pid"
    config, _ = marker_config(tmp_path, circus="pdeathsig = false")
    first = daemon_factory(config, "--pidfile", str(pidfile))
    [survivor] = started(first, 1)
    try:
        first.signal(signal.SIGKILL)
        first.wait(5)
        assert alive(survivor)
        second = daemon_factory(config, "--pidfile", str(pidfile))
        started(second, 1)
        assert read_pid(pidfile) == second.pid
    finally:
        os.kill(survivor, signal.SIGKILL)
        wait_for(lambda: not alive(survivor), message="survivor killed")
