"""Issue 9, start-up: what stops gcircusd from starting is said on the launching terminal, not only in the log."""
from __future__ import annotations

import re
import socket

from gcircus import linux
from tests.support.daemons import launch_detached, make_config, read_pid, stop_detached
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for


def _program(pid: int) -> str:
    """argv[0] of `pid`, or '' once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode()
    except OSError:
        return ""


# A watcher that only a SIGKILL stops: a daemon giving up at start-up must not keep its launcher waiting for it,
# nor tell the launcher it failed before it is gone.
STUBBORN = """
        [watcher:fine]
        cmd = /bin/sh -c "trap '' TERM; exec /bin/sleep 1000"
        graceful_timeout = 120
        priority = 10
"""


def daemon_pid(log_text: str) -> int:
    """The pid of the gcircusd that wrote this log (it says so as it starts)."""
    return int(re.search(r"starting \(pid (\d+)", log_text).group(1))


def test_daemon_whose_watcher_cannot_spawn_exits_1_with_the_reason_and_leaves_nothing(tmp_path):
    pidfile = tmp_path / "gcircusd.pid"
    log = tmp_path / "gcircusd.log"
    config = make_config(tmp_path, STUBBORN + """
        [watcher:x]
        cmd = nosuchcmd
        """)
    result = launch_detached("--pidfile", str(pidfile), "--log-output", str(log), config)
    text = log.read_text()
    pid = daemon_pid(text)
    try:
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "watcher 'x' failed: cannot spawn" in result.stderr
        assert "nosuchcmd" in result.stderr
        assert "watcher 'x' failed: cannot spawn" in text
        # The failure is told only once the daemon stopped what did start and gave up its pidfile: a launcher's
        # failure means nothing runs, and nothing is in the way of starting again at once.
        assert not pidfile.exists()
        assert "watcher 'fine' stopped" in text
    finally:
        stop_detached(pid)


def test_daemon_can_be_started_again_as_soon_as_its_launcher_reported_a_failure(tmp_path):
    pidfile = tmp_path / "gcircusd.pid"
    circus = f"endpoint = tcp://127.0.0.1:{free_port()}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
    bad = tmp_path / "bad"
    bad.mkdir()
    failing = make_config(bad, STUBBORN + """
        [watcher:x]
        cmd = nosuchcmd
        """, circus)
    fixed = make_config(tmp_path, """
        [watcher:fine]
        cmd = /bin/sleep 1000
        """, circus)
    log = tmp_path / "gcircusd.log"
    first = launch_detached("--pidfile", str(pidfile), "--log-output", str(tmp_path / "first.log"), failing)
    failed_pid = daemon_pid((tmp_path / "first.log").read_text())
    second = launch_detached("--pidfile", str(pidfile), "--log-output", str(log), fixed)
    pid = read_pid(pidfile)
    try:
        assert first.returncode == 1, first.stderr
        assert second.returncode == 0, second.stderr  # same pidfile and endpoints: all given up in time
        assert pid is not None and pid != failed_pid
    finally:
        stop_detached(failed_pid)
        if pid is not None:
            stop_detached(pid)


def undecided_hook_config(tmp_path, pidfile, log) -> str:
    """`fine` starts, then the before_start hook of `x` gives an answer whose truth raises: not an OSError."""
    return make_config(tmp_path, STUBBORN + """
        [watcher:x]
        cmd = /bin/sleep 1000
        hooks.before_start = tests.support.hookfuncs.undecided
        """, f"pidfile = {pidfile}\nlogoutput = {log}\n")


CRASH = "gcircusd: crashed while starting: RuntimeError: this answer is neither true nor false"


def test_any_start_up_crash_with_a_log_file_is_also_printed_on_stderr(tmp_path, daemon_factory):
    pidfile, log = tmp_path / "gcircusd.pid", tmp_path / "gcircusd.log"
    daemon = daemon_factory(undecided_hook_config(tmp_path, pidfile, log))
    assert daemon.wait(30) == 1
    assert CRASH in daemon.output()
    assert "Traceback" in log.read_text() and "watcher 'fine' stopped" in log.read_text()
    assert not pidfile.exists()


def test_any_start_up_crash_is_printed_by_the_launching_command(tmp_path):
    pidfile, log = tmp_path / "gcircusd.pid", tmp_path / "gcircusd.log"
    result = launch_detached(undecided_hook_config(tmp_path, pidfile, log))
    text = log.read_text()
    pid = daemon_pid(text)
    try:
        assert result.returncode == 1
        assert CRASH in result.stderr and "exited during start-up" not in result.stderr
        assert not pidfile.exists() and "watcher 'fine' stopped" in text
    finally:
        stop_detached(pid)


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
    result = launch_detached("--pidfile", str(pidfile), "--log-output", str(tmp_path / "gcircusd.log"), config)
    pid = read_pid(pidfile)
    try:
        assert result.returncode == 0, result.stderr
        assert "warning: watcher 'x' is backing off and retries forever" in result.stderr
        assert "nosuchcmd" in result.stderr
        # The retrying watcher does not hold up the ones started after it.
        # (Counted by command: a background retry of x may show a short-lived child of its own.)
        wait_for(lambda: len([p for p in linux.children(pid) if alive(p) and _program(p) == "/bin/sleep"]) == 1,
                 timeout=30, message="the 'fine' watcher's one process")
    finally:
        if pid is not None:
            stop_detached(pid)


def test_a_crash_looping_command_is_not_a_start_up_failure(tmp_path):
    pidfile = tmp_path / "gcircusd.pid"
    config = make_config(tmp_path, """
        [watcher:crash]
        cmd = false
        """)
    result = launch_detached("--pidfile", str(pidfile), "--log-output", str(tmp_path / "gcircusd.log"), config)
    pid = read_pid(pidfile)
    try:
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    finally:
        if pid is not None:
            stop_detached(pid)


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
        result = launch_detached(config)
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

