"""gcircusd out of file descriptors: spawns fail with EMFILE, which is transient, never a reason to give up.

The running gcircusd's RLIMIT_NOFILE is lowered from the test, so every new fd it opens fails (a local user can get
there with idle connections); a killed process then cannot be replaced. The watcher must keep retrying without
counting it towards max_retry (1 here: a single counted failure would stop the watcher and its healthy processes),
and replace the process once the limit is restored, its other processes untouched.
"""
from __future__ import annotations

import os
import resource
import signal

import psutil

from gcircus.client import Client
from tests.support.daemons import write_config
from tests.support.processes import alive
from tests.support.waiting import wait_for


def test_spawns_failing_for_lack_of_fds_are_retried_until_they_work(tmp_path, daemon_factory):
    path = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = ipc://{tmp_path}/ctl
        pubsub_endpoint = ipc://{tmp_path}/pub
        [watcher:w]
        cmd = sleep 300
        numprocesses = 3
        max_retry = 1
        graceful_timeout = 5
        """)
    daemon = daemon_factory(path)
    client = Client(f"ipc://{tmp_path}/ctl", timeout=30)
    try:
        pids = wait_for(lambda: _pids(client) if len(_pids(client)) == 3 else None, timeout=30,
                        message="3 processes")
        daemon_process = psutil.Process(daemon.pid)
        limits = daemon_process.rlimit(resource.RLIMIT_NOFILE)
        victim, survivors = pids[0], pids[1:]
        daemon_process.rlimit(resource.RLIMIT_NOFILE, (3, limits[1]))  # every new fd fails: EMFILE
        try:
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: "Too many open files" in daemon.output(), timeout=30, message="the EMFILE logged")
            assert all(alive(pid) for pid in survivors)
        finally:
            daemon_process.rlimit(resource.RLIMIT_NOFILE, limits)
        recovered = wait_for(lambda: (lambda now: now if len(now) == 3 else None)(_pids(client)), timeout=30,
                             message="the killed process replaced")
        assert set(survivors) <= set(recovered) and victim not in recovered
        assert client.call("status", name="w")["status"] == "active"
        assert "giving up" not in daemon.output()
    finally:
        client.close()


def _pids(client: Client) -> list[int]:
    try:
        return sorted(client.call("list", name="w").get("pids") or [])
    except Exception:  # noqa: BLE001 - not answering yet
        return []
