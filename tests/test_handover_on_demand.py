"""`gcircusctl upgrade` with an on_demand watcher behind a [socket]: it keeps its state (stopped and waiting, or
started with the same process) and still starts on the first connection afterwards."""
from __future__ import annotations

import http.client
import json
import sys

from gevent import subprocess as gsubprocess

from tests.support.children import web_worker
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.ports import free_port
from tests.support.waiting import wait_for


def on_demand_web(port: int) -> str:
    return f"""
        [socket:web]
        host = 127.0.0.1
        port = {port}

        [watcher:web]
        cmd = {sys.executable} {web_worker.__file__} $(circus.sockets.web) 0
        use_sockets = True
        on_demand = True
        ready = notify
        graceful_timeout = 2
        """


def served_by(port: int) -> int:
    """The pid of the worker that answered a GET (the connection waits in the listen queue until one accepts)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())["pid"]
    finally:
        connection.close()


def upgrade(running) -> None:
    done = gsubprocess.run([*GCIRCUSCTL, "--endpoint", running.endpoint, "upgrade"], capture_output=True,
                           text=True, timeout=90, env=ctl_env())
    assert done.returncode == 0, done.stderr


def test_an_on_demand_watcher_still_waiting_starts_on_the_first_connection_after_an_upgrade(gcircusd):
    port = free_port()
    running = gcircusd(on_demand_web(port))
    assert (running.call("status", name="web")["status"], running.pids("web")) == ("stopped", [])
    upgrade(running)
    assert (running.call("status", name="web")["status"], running.pids("web")) == ("stopped", [])
    pid = served_by(port)
    assert running.pids("web") == [pid]
    wait_for(lambda: running.call("status", name="web")["status"] == "active", timeout=30, message="web active")


def test_an_on_demand_watcher_started_keeps_its_process_and_waits_again_once_stopped(gcircusd):
    port = free_port()
    running = gcircusd(on_demand_web(port))
    pid = served_by(port)  # started by this connection
    wait_for(lambda: running.call("status", name="web")["status"] == "active", timeout=30, message="web active")
    upgrade(running)
    assert running.pids("web") == [pid]
    assert running.call("status", name="web")["status"] == "active"
    assert served_by(port) == pid
    running.call("stop", name="web", waiting=True)
    assert running.pids("web") == []
    again = served_by(port)  # the new image's waiter starts it again
    assert again != pid and running.pids("web") == [again]
