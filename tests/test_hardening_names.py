"""Watcher names must be printable text that UTF-8 can encode: every event topic and reply carries them.

Before, `add` accepted a name holding a lone surrogate (a JSON "\\udcff" escape) and then every event of that
watcher failed to publish; control characters went into logs and terminals as they were.
"""
from __future__ import annotations

import json
import uuid

import pytest
import zmq

from gcircus.client import Client
from tests.support.control import answers
from tests.support.daemons import write_config
from tests.support.waiting import wait_for


@pytest.fixture
def daemon(tmp_path, daemon_factory):
    path = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = ipc://{tmp_path}/ctl
        pubsub_endpoint = ipc://{tmp_path}/pub
        [watcher:first]
        cmd = sleep 300
        graceful_timeout = 5
        """)
    daemon_factory(path)
    client = Client(f"ipc://{tmp_path}/ctl", timeout=30)
    wait_for(lambda: answers(client), timeout=30, message="gcircusd answering")
    yield tmp_path, client
    client.close()




def _raw_call(endpoint: str, text: str) -> dict:
    """Send a request written as raw JSON text (so escapes such as \\udcff arrive exactly as a client wrote them)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(endpoint)
        sock.send(text.encode("ascii"))
        assert sock.poll(30_000), "no reply"
        return json.loads(sock.recv())
    finally:
        sock.close()


@pytest.mark.parametrize("escaped_name", ["\\udcff", "a\\ud800b", "tab\\tbed", "bell\\u0007", "new\\nline"])
def test_add_refuses_a_name_that_cannot_be_published(daemon, escaped_name):
    tmp_path, client = daemon
    request = ('{"id": "' + uuid.uuid4().hex + '", "command": "add", "properties": {"name": "' + escaped_name
               + '", "cmd": "sleep 300", "start": true}}')
    reply = _raw_call(f"ipc://{tmp_path}/ctl", request)
    assert reply["status"] == "error", reply
    assert "name" in reply["reason"]
    assert client.call("list")["watchers"] == ["first"]


@pytest.mark.parametrize("name", ["web-app.1", "my worker", "café_2"])
def test_add_accepts_sane_names_and_publishes_their_events(daemon, name):
    tmp_path, client = daemon
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"watcher.")
    sub.connect(f"ipc://{tmp_path}/pub")
    try:
        reply = client.call("add", name=name, cmd="sleep 300", start=True)
        assert reply["status"] == "ok", reply
        wait_for(lambda: client.call("list", name=name).get("pids"), timeout=30, message="the new watcher running")
        # A spawn event with the name in its topic (the subscription may miss the first ones: make more).
        topic = f"watcher.{name.lower().replace(' ', '_')}.".encode()
        seen = []

        def got_event():
            client.call("incr", name=name)
            while sub.poll(200):
                seen.append(sub.recv_multipart()[0])
            return any(t.startswith(topic) for t in seen)
        wait_for(got_event, timeout=30, message="an event of the new watcher")
    finally:
        sub.close()
        client.call("rm", name=name)


def test_config_with_a_control_character_in_a_watcher_name_is_refused(tmp_path, daemon_factory):
    path = tmp_path / "circus.ini"
    path.write_text(f"[circus]\nendpoint = ipc://{tmp_path}/ctl\npubsub_endpoint = ipc://{tmp_path}/pub\n"
                    "[watcher:bad\x1bname]\ncmd = sleep 300\n")
    daemon = daemon_factory(str(path))
    assert daemon.wait() == 2
    out = daemon.output()
    assert str(path) in out and "printable" in out
