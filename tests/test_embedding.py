"""Embedding: a monkeypatched gevent WSGI app runs an arbiter on its own hub and keeps serving while a child is
replaced."""
from __future__ import annotations

import http.client
import json
import os
import signal
import sys

from gevent import subprocess as gsubprocess

from gcircus import linux
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for

APP = os.path.join(os.path.dirname(__file__), "support", "children", "embedded_app.py")


def fetch(port: int) -> dict | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        response = conn.getresponse()
        data = json.loads(response.read())
        conn.close()
        return data if response.status == 200 else None
    except OSError:
        return None


def test_monkeypatched_wsgi_app_keeps_serving_while_killed_child_is_replaced():
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    app = gsubprocess.Popen([sys.executable, APP, str(port)], env=env)
    try:
        state = wait_for(lambda: (s := fetch(port)) and len(s["pids"]) == 2 and s, timeout=20, message="app up")
        assert state["status"] == "active"
        assert sorted(state["pids"]) == sorted(linux.children(app.pid))
        victim = state["pids"][0]
        os.kill(victim, signal.SIGKILL)
        failures = 0
        served = 0

        def replaced():
            nonlocal failures, served
            current = fetch(port)
            if current is None:
                failures += 1
                return False
            served += 1
            return victim not in current["pids"] and len(current["pids"]) == 2

        wait_for(replaced, timeout=10, message="replacement while serving")
        assert failures == 0 and served >= 1
        children = [pid for pid in linux.children(app.pid) if alive(pid)]
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=20) == 0
        assert not any(alive(pid) for pid in children)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
