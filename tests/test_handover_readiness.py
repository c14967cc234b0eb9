"""`gcircusctl upgrade` while a process still waits for its readiness (`ready = fd:N` or `notify`): the new image
reads the same readiness channel (the fd:N pipe, the notify socket at the same address) and keeps the deadline the
process had, never a fresh ready_timeout."""
from __future__ import annotations

import os
import signal
import time

import pytest
from gevent import subprocess as gsubprocess

from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.readiness import child
from tests.support.waiting import wait_for

READY_TIMEOUT = 8.0
# How each check is told "ready" by a ready_child once its go-file exists.
SAYS_READY = {"fd:3": "fd=3", "notify": "notify=READY=1"}


def readiness_watcher(check: str, go_dir, ready_timeout: float) -> str:
    """A watcher `late` whose each process is ready only once the file go-PID exists in `go_dir`."""
    return f"""
        [watcher:late]
        cmd = {child(f"wait={go_dir}/go-%PID%", SAYS_READY[check])}
        ready = {check}
        ready_timeout = {ready_timeout}
        graceful_timeout = 2
        """


def row_of(running, pid: int | None = None) -> dict | None:
    rows = running.call("procs", name="late")["processes"]
    if pid is None:
        return rows[0] if len(rows) == 1 else None
    return next((r for r in rows if r["pid"] == pid), None)


def started_with_a_replacement_waiting(gcircusd, check: str, go_dir, ready_timeout: float) -> tuple:
    """gcircusd with `late` started (its first process made ready), then that process killed: (running, the
    replacement's row), the replacement waiting for its readiness outside any command (an upgrade may run)."""
    running = gcircusd(readiness_watcher(check, go_dir, ready_timeout), started=False)
    first = wait_for(lambda: row_of(running), timeout=30, message="the first process")
    (go_dir / f"go-{first['pid']}").touch()
    wait_for(lambda: "gcircusd running" in running.daemon.output(), timeout=60, message="the watcher started")
    os.kill(first["pid"], signal.SIGKILL)
    replacement = wait_for(lambda: (r := row_of(running)) and r["pid"] != first["pid"] and r, timeout=30,
                           message="the replacement spawned")
    assert replacement["state"] == "spawned"
    return running, replacement


def upgrade_when_quiet(running) -> gsubprocess.CompletedProcess:
    """`gcircusctl upgrade`, again while it is refused because the watcher is still busy with the exit."""
    def attempt():
        done = gsubprocess.run([*GCIRCUSCTL, "--endpoint", running.endpoint, "upgrade"], capture_output=True,
                               text=True, timeout=90, env=ctl_env())
        return done if done.returncode == 0 or "busy" not in done.stderr + done.stdout else None
    done = wait_for(attempt, timeout=60, message="an upgrade that is not refused as busy")
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("check", sorted(SAYS_READY))
def test_a_process_ready_only_after_the_upgrade_is_seen_ready_by_the_new_image(gcircusd, tmp_path, check):
    running, waiting = started_with_a_replacement_waiting(gcircusd, check, tmp_path, 120)
    upgrade_when_quiet(running)
    after = row_of(running, waiting["pid"])
    assert after is not None and after["state"] == "spawned", after
    (tmp_path / f"go-{waiting['pid']}").touch()  # says so on the channel the old image opened
    wait_for(lambda: (row_of(running, waiting["pid"]) or {}).get("state") == "ready", timeout=30,
             message="the process ready in the new image")
    assert running.call("status", name="late")["status"] == "active"


@pytest.mark.parametrize("check", sorted(SAYS_READY))
def test_a_process_never_ready_fails_at_its_original_deadline(gcircusd, tmp_path, check):
    running, waiting = started_with_a_replacement_waiting(gcircusd, check, tmp_path, READY_TIMEOUT)
    deadline = waiting["started"] + READY_TIMEOUT
    # Upgrade halfway to its deadline: a fresh ready_timeout would fail it READY_TIMEOUT after the upgrade.
    wait_for(lambda: time.time() >= waiting["started"] + READY_TIMEOUT / 2, timeout=30, message="half the timeout")
    upgrade_when_quiet(running)

    def failed():
        rows = running.call("procs", name="late")["processes"]
        return next((r["last_exit"] for r in rows if (r["last_exit"] or {}).get("pid") == waiting["pid"]), None)
    lost = wait_for(failed, timeout=60, message="the process given up as not ready")
    assert "not ready" in lost["description"], lost
    assert deadline - 0.5 <= lost["time"] < deadline + READY_TIMEOUT / 2, (waiting, lost)
