"""What a process leaves in its process group when it exits on its own is stopped with it, output kept.

Before, a shell wrapper's background job outlived its shell, every respawn added one more, and `stop` of the
watcher left them all running; what they wrote after the exit was lost.
"""
from __future__ import annotations

import os
import signal

import gevent

from gcircus.client import Client
from gcircus.watcher import Watcher
from tests.support.daemons import write_config
from tests.support.processes import alive
from tests.support.waiting import wait_for


def _daemon(tmp_path, daemon_factory, watcher: str):
    path = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = ipc://{tmp_path}/ctl
        pubsub_endpoint = ipc://{tmp_path}/pub
        [watcher:w]
        graceful_timeout = 5
        {watcher}
        """)
    daemon = daemon_factory(path)
    return daemon, Client(f"ipc://{tmp_path}/ctl", timeout=30)


def _read_pid(path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def test_a_background_job_left_by_an_exited_process_is_stopped_and_its_output_kept(tmp_path, daemon_factory):
    orphan_pid = tmp_path / "orphan.pid"
    out = tmp_path / "out.log"
    # The first run leaves a job that prints when stopped (once it is set up), then exits; later runs just sleep.
    script = (f"if [ -e {tmp_path}/ran ]; then exec sleep 300; fi; touch {tmp_path}/ran; "
              f"(trap 'echo orphan got TERM; exit 0' TERM; sleep 300 & echo $! > {orphan_pid}.sleep; "
              f"touch {tmp_path}/ready; wait) & echo $! > {orphan_pid}; "
              f"while [ ! -e {tmp_path}/ready ]; do sleep 0.05; done; exit 0")
    daemon, client = _daemon(tmp_path, daemon_factory, f"""
        cmd = sh -c "{script}"
        stdout_stream.class = FileStream
        stdout_stream.filename = {out}
        """)
    try:
        orphan = wait_for(lambda: _read_pid(orphan_pid), timeout=30, message="the background job's pid")
        sleeper = wait_for(lambda: _read_pid(tmp_path / "orphan.pid.sleep"), timeout=30, message="its sleep")
        wait_for(lambda: not alive(orphan) and not alive(sleeper), timeout=30, message="the leftovers stopped")
        wait_for(lambda: out.exists() and "orphan got TERM" in out.read_text(), timeout=30,
                 message="the leftover's last words written")
        # The watcher carries on with its replacement process.
        pids = wait_for(lambda: client.call("list", name="w").get("pids"), timeout=30, message="a replacement")
        assert alive(pids[0]) and pids[0] != orphan
        assert "leaving" in daemon.output()
    finally:
        client.close()


def test_stop_leaves_nothing_of_processes_that_exited_on_their_own(tmp_path, daemon_factory):
    orphan_pid = tmp_path / "orphan.pid"
    daemon, client = _daemon(tmp_path, daemon_factory, f"""
        cmd = sh -c "sleep 300 & echo $! > {orphan_pid}; exit 0"
        respawn = false
        """)
    try:
        orphan = wait_for(lambda: _read_pid(orphan_pid), timeout=30, message="the background job's pid")
        wait_for(lambda: client.call("status", name="w")["status"] == "stopped", timeout=30,
                 message="the watcher stopped (respawn off, no process left)")
        wait_for(lambda: not alive(orphan), timeout=30, message="the orphan stopped")
        assert os.getpgid(daemon.pid) != orphan
    finally:
        client.close()


def test_a_stop_with_no_grace_period_kills_a_leftover_ignoring_its_stop_signal(tmp_path):
    # In-process watcher: its stop(graceful_timeout=0) must not wait the watcher's 60 s graceful_timeout for the
    # leftover of an exited process that ignores SIGTERM.
    orphan_pid = tmp_path / "orphan.pid"
    script = (f"if [ -e {tmp_path}/ran ]; then exec sleep 300; fi; touch {tmp_path}/ran; "
              f"(trap '' TERM; touch {tmp_path}/ready; exec sleep 300) & echo $! > {orphan_pid}; "
              f"while [ ! -e {tmp_path}/ready ]; do sleep 0.05; done; exit 0")
    watcher = Watcher("w", "sh", args=["-c", script], graceful_timeout=60, working_dir=str(tmp_path))
    orphan = 0
    try:
        watcher.start()
        orphan = wait_for(lambda: _read_pid(orphan_pid), timeout=30, message="the background job's pid")
        wait_for(lambda: watcher._leftover_stops, timeout=30, message="the leftover being stopped")
        assert alive(orphan)  # it ignores SIGTERM: the leftover stop waits out the 60 s grace period
        stopper = gevent.spawn(watcher.stop, 0)
        stopper.join(timeout=30)  # well under the 60 s the leftover stop would otherwise wait
        assert stopper.ready(), "stop(graceful_timeout=0) waited for the grace period"
        wait_for(lambda: not alive(orphan), timeout=30, message="the leftover killed")
    finally:
        watcher.stop(0)
        if orphan and alive(orphan):
            os.kill(orphan, signal.SIGKILL)
