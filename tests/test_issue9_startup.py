"""Issue 9, start-up: what stops gcircusd from starting is said on the launching terminal, not only in the log."""
from __future__ import annotations

import socket

from gcircus import linux
from tests.conftest import alive, free_port, wait_for
from tests.test_gcircusd_daemon import launch, stop_daemon
from tests.test_gcircusd_pidfile import read_pid
from tests.test_gcircusd_signals import make_config


def _program(pid: int) -> str:
    """argv[0] of `pid`, or '' once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode()
    except OSError:
        return ""


def test_daemon_whose_watcher_cannot_spawn_exits_1_with_the_reason_and_leaves_nothing(tmp_path):
    pidfile = tmp_path / "gcircusd.pid"
    log = tmp_path / "gcircusd.log"
    config = make_config(tmp_path, """
        [watcher:x]
        cmd = nosuchcmd

        [watcher:fine]
        cmd = /bin/sleep 1000
        """)
    result = launch("--pidfile", str(pidfile), "--log-output", str(log), config)
    pid = read_pid(pidfile)
    try:
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "watcher 'x' did not start" in result.stderr
        assert "nosuchcmd" in result.stderr
        assert "did not start" in log.read_text()
        # The daemon stopped what did start and went away with its pidfile: a launcher's failure means nothing runs.
        wait_for(lambda: not pidfile.exists(), message="pidfile removed")
        assert "watcher 'fine' stopped" in log.read_text()
    finally:
        if pid is not None:
            stop_daemon(pid)


def test_daemon_with_a_watcher_retrying_forever_starts_and_warns(tmp_path):
    pidfile = tmp_path / "gcircusd.pid"
    config = make_config(tmp_path, """
        [watcher:x]
        cmd = nosuchcmd
        max_retry = -1

        [watcher:fine]
        cmd = /bin/sleep 1000
        priority = -1
        """)
    result = launch("--pidfile", str(pidfile), "--log-output", str(tmp_path / "gcircusd.log"), config)
    pid = read_pid(pidfile)
    try:
        assert result.returncode == 0, result.stderr
        assert "warning: watcher 'x' cannot spawn yet" in result.stderr and "nosuchcmd" in result.stderr
        # The retrying watcher does not hold up the ones started after it.
        # (Counted by command: a background retry of x may show a short-lived child of its own.)
        wait_for(lambda: len([p for p in linux._read_children(pid) if alive(p) and _program(p) == "/bin/sleep"]) == 1,
                 timeout=30, message="the 'fine' watcher's one process")
    finally:
        if pid is not None:
            stop_daemon(pid)


def test_a_crash_looping_command_is_not_a_start_up_failure(tmp_path):
    pidfile = tmp_path / "gcircusd.pid"
    config = make_config(tmp_path, """
        [watcher:crash]
        cmd = false
        """)
    result = launch("--pidfile", str(pidfile), "--log-output", str(tmp_path / "gcircusd.log"), config)
    pid = read_pid(pidfile)
    try:
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    finally:
        if pid is not None:
            stop_daemon(pid)


def busy_endpoint_config(tmp_path, port: int, logoutput: str) -> str:
    """A config whose control endpoint is `port` (held by the test), logging to `logoutput`."""
    path = tmp_path / "circus.ini"
    path.write_text(f"[circus]\nendpoint = tcp://127.0.0.1:{port}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
                    f"logoutput = {logoutput}\n\n[watcher:fine]\ncmd = /bin/sleep 1000\n")
    return str(path)


def occupied_port() -> tuple[socket.socket, int]:
    port = free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    return holder, port


def test_start_failure_with_a_log_file_is_also_printed_on_stderr(tmp_path, daemon_factory):
    holder, port = occupied_port()
    log = tmp_path / "gcircusd.log"
    config = busy_endpoint_config(tmp_path, port, str(log))
    try:
        daemon = daemon_factory(config)
        assert daemon.wait(30) == 1
    finally:
        holder.close()
    assert f"127.0.0.1:{port}" in daemon.output()
    assert f"127.0.0.1:{port}" in log.read_text()


def test_start_failure_with_a_log_file_is_printed_by_the_launching_command(tmp_path):
    holder, port = occupied_port()
    log = tmp_path / "gcircusd.log"
    config = busy_endpoint_config(tmp_path, port, str(log))
    try:
        result = launch(config)
    finally:
        holder.close()
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr


def test_start_failure_logged_to_stderr_is_printed_once(tmp_path, daemon_factory):
    holder, port = occupied_port()
    config = busy_endpoint_config(tmp_path, port, "stderr")
    try:
        daemon = daemon_factory(config)
        assert daemon.wait(30) == 1
    finally:
        holder.close()
    assert daemon.output().count("Address already in use") == 1, daemon.output()

