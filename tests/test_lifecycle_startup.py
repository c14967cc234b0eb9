"""`gcircusd --daemon` whose autostart watcher ends failed in a crash loop during start-up: the launching command
exits 1 naming the watcher and why, and nothing of the daemon is left running.

The watcher's processes never become ready (ready = fd:3, closed without the newline), so the watcher stays starting
through its crash loop; with `ready = none` it would be active at its first spawn, and start-up done by then.
"""
from __future__ import annotations

import re

import pytest

from tests.support.daemons import launch_detached, make_config
from tests.support.processes import alive, spawned
from tests.support.waiting import wait_for

pytest.importorskip("gcircus.checks.follow", reason="readiness checks (ready = fd:N) are not in this tree yet")


def test_a_watcher_failed_in_a_crash_loop_at_start_up_fails_the_daemon_and_nothing_is_left(tmp_path):
    record = tmp_path / "spawns"
    pidfile = tmp_path / "gcircusd.pid"
    log = tmp_path / "gcircusd.log"
    config = make_config(tmp_path, f"""
        [watcher:fine]
        cmd = sh -c 'echo $$ >> {record}; exec sleep 1000'
        graceful_timeout = 5
        priority = 10

        [watcher:crash]
        cmd = sh -c 'echo $$ >> {record}; exit 1'
        ready = fd:3
        flapping.window = 3
        flapping.retry_in = 0.2
        flapping.max_retry = 1
        """)
    result = launch_detached("--pidfile", str(pidfile), "--log-output", str(log), config)
    daemon = int(re.search(r"starting \(pid (\d+)", log.read_text()).group(1))
    wait_for(lambda: not alive(daemon), 30, message="the daemon gone")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "watcher 'crash' failed: crash loop: 2 exits within 3s, after 1 back-offs" in result.stderr
    assert not pidfile.exists()
    pids = [int(pid) for pid in spawned(record)]
    assert len(pids) >= 5  # fine's one, and crash's two per try: the first, and one retry after backing off
    assert not [pid for pid in pids if alive(pid)]
