"""gcircusd's exit codes as a container's main process: essential watchers (exit 3) and [circus] stop_timeout (exit 4).

Real gcircusd processes on real configs. The PID-namespace versions (gcircusd as PID 1) are in test_pid1_namespace.
"""
from __future__ import annotations

import os
import signal

from gcircus.client import Client
from gcircus.daemon import EXIT_ESSENTIAL_FAILED, EXIT_OK, EXIT_STOP_TIMEOUT
from tests.support.daemons import circus_config, launch_detached, make_config, run_cli, started
from tests.support.processes import IGNORE_TERM, alive, ignores_term
from tests.support.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # gcircusd's cwd where a hook is imported

# A watcher that crashes at once, made to give up (failed) after one short back-off.
CRASH_LOOP = """
        cmd = sh -c 'exit 7'
        flapping.attempts = 2
        flapping.window = 30
        flapping.retry_in = 0.1
        flapping.max_retry = 1
        """

# A watcher whose child ignores SIGTERM and would get an hour to stop: only stop_timeout bounds its stop.
STUBBORN = f"""
        [watcher:stubborn]
        cmd = {IGNORE_TERM}
        graceful_timeout = 3600
        """


def trapping(record) -> str:
    """A process that records the SIGTERM it gets, then exits 0: a graceful stop leaves a line in `record`."""
    return f"""sh -c 'trap "echo $$ >> {record}; exit 0" TERM; while :; do sleep 0.1; done'"""


def test_an_essential_watcher_that_fails_stops_everything_gracefully_and_exits_3(tmp_path, daemon_factory):
    record = tmp_path / "stopped"
    config = make_config(tmp_path, f"""
        [watcher:web]
        cmd = {trapping(record)}
        graceful_timeout = 30

        [watcher:worker]
        essential = true
        {CRASH_LOOP}
        """)
    daemon = daemon_factory(config)
    wait_for(lambda: record.exists() or daemon.proc.poll() is not None, 60, message="web stopped")
    assert daemon.wait(60) == EXIT_ESSENTIAL_FAILED
    output = daemon.output()
    assert "essential watcher 'worker' failed" in output, output
    assert f"exit code {EXIT_ESSENTIAL_FAILED}" in output
    assert len(record.read_text().split()) == 1  # web got its stop signal: a graceful stop, not a kill
    assert daemon.children() == []


def test_an_essential_watcher_without_respawn_whose_process_exits_stops_gcircusd(tmp_path, daemon_factory):
    config = make_config(tmp_path, """
        [watcher:web]
        cmd = sleep 1000

        [watcher:job]
        essential = true
        respawn = false
        numprocesses = 2
        cmd = sleep 0.2
        """)
    daemon = daemon_factory(config)
    assert daemon.wait(60) == EXIT_ESSENTIAL_FAILED
    assert "essential watcher 'job' has no process left (respawn = false)" in daemon.output()


def test_a_failing_watcher_that_is_not_essential_leaves_gcircusd_running(tmp_path, daemon_factory):
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:web]
        cmd = sleep 1000

        [watcher:worker]
        {CRASH_LOOP}
        """)
    daemon = daemon_factory(config)
    started(daemon, 1)
    client = Client(endpoint, timeout=20)
    try:
        wait_for(lambda: client.call("status", name="worker")["status"] == "failed", 60, message="worker failed")
        assert daemon.proc.poll() is None
    finally:
        client.close()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(60) == EXIT_OK


def test_an_operator_stop_of_an_essential_watcher_is_no_failure(tmp_path, daemon_factory):
    config, endpoint = circus_config(tmp_path, """
        [watcher:web]
        cmd = sleep 1000
        essential = true
        respawn = false
        """)
    daemon = daemon_factory(config)
    started(daemon, 1)
    client = Client(endpoint, timeout=20)
    try:
        assert client.call("stop", name="web", waiting=True)["status"] == "ok"
        assert client.call("status", name="web")["status"] == "stopped"
        assert daemon.proc.poll() is None
    finally:
        client.close()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(60) == EXIT_OK
    assert "essential" not in daemon.output()


def test_stop_timeout_kills_what_ignores_the_stop_signal_and_exits_4(tmp_path, daemon_factory):
    config = make_config(tmp_path, STUBBORN, circus="stop_timeout = 0.5\n")
    daemon = daemon_factory(config)
    [pid] = started(daemon, 1)
    wait_for(lambda: ignores_term(pid), message="the child ignores SIGTERM")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(60) == EXIT_STOP_TIMEOUT
    assert not alive(pid)
    assert "outlasted stop_timeout (0.5s)" in daemon.output()


def test_a_shutdown_within_stop_timeout_exits_0(tmp_path, daemon_factory):
    config = make_config(tmp_path, """
        [watcher:web]
        cmd = sleep 1000
        """, circus="stop_timeout = 3600\n")
    daemon = daemon_factory(config)
    started(daemon, 1)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(60) == EXIT_OK


def test_quit_is_bounded_by_stop_timeout_too(tmp_path, daemon_factory):
    config, endpoint = circus_config(tmp_path, STUBBORN, circus="stop_timeout = 0\n")
    daemon = daemon_factory(config)
    [pid] = started(daemon, 1)
    wait_for(lambda: ignores_term(pid), message="the child ignores SIGTERM")
    client = Client(endpoint, timeout=20)
    try:
        client.call("quit")
    finally:
        client.close()
    assert daemon.wait(60) == EXIT_STOP_TIMEOUT
    assert not alive(pid)


def test_bad_values_are_configuration_errors(tmp_path):
    for name, lines, option in [("negative.ini", "[circus]\nstop_timeout = -1\n", "stop_timeout"),
                                ("word.ini", "[circus]\nstop_timeout = soon\n", "stop_timeout"),
                                ("essential.ini", "[watcher:w]\ncmd = sleep 1\nessential = maybe\n", "essential")]:
        path = tmp_path / name
        path.write_text(lines)
        result = run_cli(str(path))
        assert result.returncode == 2, result
        assert option in result.stderr


def test_essential_set_at_run_time_counts_from_then_on(tmp_path, daemon_factory):
    config, endpoint = circus_config(tmp_path, """
        [watcher:job]
        cmd = sleep 1000
        respawn = false
        """)
    daemon = daemon_factory(config)
    [pid] = started(daemon, 1)
    client = Client(endpoint, timeout=20)
    try:
        assert client.call("set", name="job", options={"essential": True})["status"] == "ok"
        assert client.call("get", name="job", keys=["essential"])["options"] == {"essential": True}
        assert client.call("signal", name="job", signum=9)["status"] == "ok"
    finally:
        client.close()
    assert daemon.wait(60) == EXIT_ESSENTIAL_FAILED
    assert f"its last process (pid {pid}) exited with signal 9" in daemon.output()


def test_reloadconfig_applies_stop_timeout_to_the_next_shutdown(tmp_path, daemon_factory):
    config, endpoint = circus_config(tmp_path, STUBBORN)
    daemon = daemon_factory(config)
    [pid] = started(daemon, 1)
    wait_for(lambda: ignores_term(pid), message="the child ignores SIGTERM")
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace("[circus]\n", "[circus]\nstop_timeout = 0.5\n", 1))
    client = Client(endpoint, timeout=20)
    try:
        assert client.call("reloadconfig")["status"] == "ok"
    finally:
        client.close()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(60) == EXIT_STOP_TIMEOUT
    assert not alive(pid)


def test_with_daemon_an_essential_failure_at_start_fails_the_launch(tmp_path):
    config = make_config(tmp_path, """
        [watcher:worker]
        essential = true
        cmd = /nonexistent/program
        max_retry = 1
        """)
    result = launch_detached(config)
    assert result.returncode == 1, result
    assert "essential watcher 'worker' failed" in result.stderr


def test_past_stop_timeout_gcircusd_exits_even_while_a_hook_holds_the_stop(tmp_path, daemon_factory):
    config = make_config(tmp_path, """
        [watcher:held]
        cmd = sleep 1000
        hooks.before_stop = tests.support.hookfuncs.hang
        hook_timeout = 3600
        """, circus="stop_timeout = 0\n")
    daemon = daemon_factory(config, cwd=REPO)
    [pid] = started(daemon, 1)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(60) == EXIT_STOP_TIMEOUT
    assert not alive(pid)
    assert "gcircusd exits anyway" in daemon.output()
