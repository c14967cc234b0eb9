"""A watcher whose processes crash before they are ready ends failed while it starts: `gcircusd --daemon` exits 1
naming it (and nothing of the daemon is left running), `start --waiting` is an error naming it.

The processes never become ready (ready = fd:3, closed without the newline), so the watcher stays starting through
its crash loop; with `ready = none` it would be active at its first spawn, and a start done by then.
"""
from __future__ import annotations

import re

from gcircus.cli.gcircusctl import main as gcircusctl
from tests.support.daemons import launch_detached, make_config
from tests.support.processes import alive, spawned
from tests.support.waiting import wait_for

FINE = """
    [watcher:fine]
    cmd = sh -c 'echo $$ >> {record}; exec sleep 1000'
    graceful_timeout = 5
    priority = 10
"""
NEVER_READY = """
    [watcher:crash]
    cmd = sh -c 'echo $$ >> {record}; exit 1'
    ready = fd:3
    autostart = {autostart}
    flapping.window = 3
    flapping.retry_in = 0.2
    flapping.max_retry = 1
"""


def test_a_watcher_failed_in_a_crash_loop_at_start_up_fails_the_daemon_and_nothing_is_left(tmp_path):
    record = tmp_path / "spawns"
    pidfile = tmp_path / "gcircusd.pid"
    log = tmp_path / "gcircusd.log"
    config = make_config(tmp_path, FINE.format(record=record) + NEVER_READY.format(record=record, autostart="true"))
    result = launch_detached("--pidfile", str(pidfile), "--log-output", str(log), config)
    daemon = int(re.search(r"starting \(pid (\d+)", log.read_text()).group(1))
    wait_for(lambda: not alive(daemon), 30, message="the daemon gone")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "watcher 'crash' failed: crash loop: 2 exits within 3s, after 1 back-offs" in result.stderr
    assert not pidfile.exists()
    pids = [int(pid) for pid in spawned(record)]
    assert len(pids) >= 5  # fine's one, and crash's two per try: the first, and one retry after backing off
    assert not [pid for pid in pids if alive(pid)]


def test_start_waiting_of_a_watcher_whose_processes_crash_before_ready_names_it(gcircusd, tmp_path, capsys):
    running = gcircusd(NEVER_READY.format(record=tmp_path / "spawns", autostart="false"))
    code = gcircusctl(["--endpoint", running.endpoint, "start", "--waiting", "crash"])
    out, err = capsys.readouterr()
    assert (code, out) == (3, "")
    assert err == "error: watcher 'crash' failed: crash loop: 2 exits within 3s, after 1 back-offs\n"
    assert running.call("status", name="crash")["status"] == "failed"
