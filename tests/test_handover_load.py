"""The issue's bar for `gcircusctl upgrade`: 8 HTTP workers on a managed socket, under load, upgraded five times in a
row: no request fails, the same workers (pids, wids) serve throughout, and list/stats answer after each upgrade."""
from __future__ import annotations

import sys

from gevent import subprocess as gsubprocess

from tests.support.children import web_worker
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.load import Load
from tests.support.ports import free_port
from tests.support.waiting import wait_for

WORKERS = 8


def test_five_upgrades_under_load_fail_no_request(gcircusd):
    port = free_port()
    running = gcircusd(f"""
        [socket:web]
        host = 127.0.0.1
        port = {port}

        [watcher:web]
        cmd = {sys.executable} {web_worker.__file__} $(circus.sockets.web) 0
        use_sockets = True
        numprocesses = {WORKERS}
        ready = notify
        ready_timeout = 60
        graceful_timeout = 10
        """)
    wait_for(lambda: running.call("status", name="web")["status"] == "active", timeout=60, message="8 ready workers")
    rows = {row["pid"]: row["wid"] for row in running.call("procs", name="web")["processes"]}
    with Load(port) as load:
        load.steady()
        for round_number in range(5):
            load.begin(f"upgrade {round_number}")
            done = gsubprocess.run([*GCIRCUSCTL, "--endpoint", running.endpoint, "upgrade"], capture_output=True,
                                   text=True, timeout=90, env=ctl_env())
            assert done.returncode == 0, done.stderr
            assert {row["pid"]: row["wid"] for row in running.call("procs", name="web")["processes"]} == rows
            assert running.call("list", name="web")["pids"]
            assert running.call("stats", name="web")["info"]
            load.steady()
    assert not load.failures, load.failures
    assert {pid for pid, _ in set().union(*load.served_by.values())} <= set(rows)
    assert running.daemon.proc.poll() is None
