"""/readyz flips as watchers become ready or fail, /healthz answers while the hub is responsive, and /api/COMMAND
answers as the control channel does, errors included (one command path: gcircus.control.runner)."""
import json
import textwrap

import pytest

from tests.support.control import Wire
from tests.support.http import HttpDaemon
from tests.support.readiness import child
from tests.support.waiting import wait_for


def ready_when(path) -> str:
    """A watcher whose process says READY=1 (sd_notify) once `path` exists."""
    return textwrap.dedent(f"""
        [watcher:gated]
        cmd = {child(f"wait={path}", "notify=READY=1")}
        ready = notify
        ready_timeout = 60
        graceful_timeout = 1
        """)


def test_readyz_flips_when_the_watcher_becomes_ready(tmp_path):
    go = tmp_path / "go"
    daemon = HttpDaemon(tmp_path, ready_when(go) + "\n[watcher:idle]\ncmd = sleep 1000\nautostart = false\n")
    try:
        daemon.wait_serving()
        reply = daemon.get("/readyz", auth=False)
        assert reply.status == 503
        assert reply.json()["not_ready"] == [{"watcher": "gated", "state": "starting",
                                              "reason": reply.json()["not_ready"][0]["reason"]}]
        assert daemon.get("/healthz", auth=False).status == 200  # alive, though not ready
        go.write_text("")
        wait_for(lambda: daemon.get("/readyz", auth=False).status == 200, 30, message="/readyz 200")
        assert daemon.get("/readyz", auth=False).json() == {"ready": True, "not_ready": []}  # idle: not autostart
    finally:
        daemon.stop()


def test_readyz_lists_a_failed_watcher_with_its_reason(tmp_path):
    broken = "[watcher:broken]\ncmd = /nonexistent/gcircus-http-probe\nmax_retry = 1\n"
    daemon = HttpDaemon(tmp_path, "[watcher:web]\ncmd = sleep 1000\ngraceful_timeout = 1\n" + broken)
    try:
        daemon.wait_serving()

        def failed():
            reply = daemon.get("/readyz", auth=False)
            return reply.status == 503 and reply.json()["not_ready"][0]["state"] == "failed" and reply.json()
        body = wait_for(failed, 30, message="/readyz listing the failed watcher")
        (entry,) = body["not_ready"]
        assert entry["watcher"] == "broken" and "nonexistent" in entry["reason"]
        health = daemon.get("/healthz", auth=False).json()
        assert health["status"] == "ok" and health["hub_latency_seconds"] < health["max_hub_latency_seconds"]
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    daemon = HttpDaemon(tmp_path_factory.mktemp("api"), "[watcher:web]\ncmd = sleep 1000\ngraceful_timeout = 1\n")
    wire = None
    try:
        daemon.wait_serving()
        wire = Wire(daemon.endpoint)
        yield daemon, wire
    finally:
        if wire is not None:
            wire.close()
        daemon.stop()


def same(reply: dict) -> dict:
    """A reply without what differs between two answers to one request (its time, the id of the zmq request)."""
    return {k: v for k, v in reply.items() if k not in ("time", "id")}


@pytest.mark.parametrize("command, props", [
    ("status", {"name": "nope"}),
    ("nosuchcommand", {}),
    ("incr", {}),
    ("incr", {"name": "web", "nb": "many"}),
    ("signal", {"name": "web", "signum": "NOSIG"}),
    ("list", {"name": 3}),
    ("status", ["not", "an", "object"]),
])
def test_api_errors_are_the_control_channels(served, command, props):
    daemon, wire = served
    over_http = daemon.post(f"/api/{command}", json.dumps(props), {"Content-Type": "application/json"})
    over_zmq = wire.call({"command": command, "properties": props})
    assert over_zmq["status"] == "error"
    assert same(over_http.json()) == same(over_zmq)
    assert over_http.status in (400, 404)


def test_a_body_that_is_no_json_gets_the_control_channels_reply(served):
    daemon, wire = served
    over_http = daemon.post("/api/status", "{oops", {"Content-Type": "application/json"})
    assert over_http.status == 400
    assert same(over_http.json()) == same(wire.call(b'{"command": "status", "properties": {oops}'))


def test_reads_answer_get_with_query_parameters(served):
    daemon, wire = served
    assert same(daemon.get("/api/status?name=web").json()) == same(wire.command("status", name="web"))
    assert daemon.get("/api/list?name=web").json()["pids"] == wire.command("list", name="web")["pids"]
    assert daemon.get("/api/procs?name=web").json()["watcher"]["state"] == "active"


def test_get_never_changes_anything(served):
    daemon, _ = served
    for command in ("incr", "stop", "quit", "set"):
        reply = daemon.get(f"/api/{command}?name=web")
        assert reply.status == 405 and reply.headers["allow"] == "POST"
    assert daemon.command("numprocesses", name="web")["numprocesses"] == 1


def test_reloadconfig_says_an_http_change_needs_a_restart(tmp_path):
    daemon = HttpDaemon(tmp_path, "[watcher:web]\ncmd = sleep 1000\ngraceful_timeout = 1\n")
    try:
        daemon.wait_serving()
        with open(daemon.config) as f:
            text = f.read()
        with open(daemon.config, "w") as f:
            f.write(text.replace("[http]\n", "[http]\nrequest_timeout = 5\n"))
        reply = daemon.command("reloadconfig", waiting=True)
        assert reply["status"] == "ok" and reply["plan"]["http"] == {"changed": True, "needs_restart": True}
        # gcircusd's log is written off the hub: the line may land just after the reply.
        wait_for(lambda: "HTTP server's settings changed" in daemon.daemon.output(), 30, message="the log line")
        assert daemon.get("/readyz", auth=False).status == 200  # still serving, as it was
    finally:
        daemon.stop()
