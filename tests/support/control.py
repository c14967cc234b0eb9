"""Raw clients of the control channel (exact frames, pipelined requests, a bare DEALER) and checks of replies."""
from __future__ import annotations

import json
import uuid

import zmq
import zmq.green as gzmq

from tests.support.waiting import wait_for

ERROR_KEYS = {"status", "reason", "tb", "time", "errno", "id"}  # every error reply has exactly these


def ok(reply: dict) -> dict:
    assert reply["status"] == "ok", reply
    return reply


def error(reply: dict, errno: int) -> str:
    assert reply["status"] == "error" and reply["errno"] == errno, reply
    return reply["reason"]


class Client:
    """A bare green DEALER speaking Circus's protocol: one JSON frame out, one back (for an in-process arbiter)."""

    def __init__(self, endpoint: str):
        self.sock = gzmq.Context.instance().socket(gzmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)

    def call(self, command: str, timeout: float = 5.0, **props) -> dict:
        msg_id = uuid.uuid4().hex
        self.sock.send(json.dumps({"id": msg_id, "command": command, "properties": props}).encode())
        if not self.sock.poll(int(timeout * 1000)):
            raise AssertionError(f"no reply to {command} within {timeout}s")
        reply = json.loads(self.sock.recv())
        assert reply["id"] == msg_id
        return reply

    def close(self) -> None:
        self.sock.close()


class Wire:
    """A raw DEALER (or REQ) on the control endpoint: sends exact frames, decodes the JSON replies."""

    def __init__(self, endpoint: str, kind: int = zmq.DEALER):
        self.socket = zmq.Context.instance().socket(kind)
        self.socket.linger = 0
        self.socket.connect(endpoint)

    def close(self) -> None:
        self.socket.close(linger=0)

    def send(self, payload) -> None:
        """`payload`: a dict (sent as JSON), one frame (bytes) or a tuple of frames."""
        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        self.socket.send_multipart([payload] if isinstance(payload, bytes) else list(payload))

    def receive(self, timeout: float = 5.0) -> list[bytes]:
        """The next reply's frames; AssertionError when none comes within `timeout` seconds."""
        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError(f"no reply within {timeout}s")
        return self.socket.recv_multipart()

    def call(self, payload, timeout: float = 5.0) -> dict:
        """Send one request and return its decoded reply (the last frame)."""
        self.send(payload)
        return json.loads(self.receive(timeout)[-1])

    def command(self, command: str, **properties) -> dict:
        msg_id = uuid.uuid4().hex
        reply = self.call({"id": msg_id, "command": command, "properties": properties})
        assert reply["id"] == msg_id
        return reply

    def sent_without_reply(self, payload) -> None:
        """Send `payload`, then a sentinel `status`; assert the sentinel's reply is the only one that comes.

        The server handles one connection's requests in arrival order, so a reply to `payload` would come first.
        """
        self.send(payload)
        sentinel = uuid.uuid4().hex
        self.send({"id": sentinel, "command": "status", "properties": {}})
        frames = self.receive()
        reply = json.loads(frames[-1])
        assert reply.get("id") == sentinel, f"unexpected reply {reply!r}"


def snapshot(endpoint: str) -> dict:
    """Every watcher's status and pids, as the daemon reports them."""
    wire = Wire(endpoint)
    try:
        statuses = wire.command("status")["statuses"]
        return {name: (status, wire.command("list", name=name)["pids"]) for name, status in statuses.items()}
    finally:
        wire.close()


class Dealer:
    """A raw DEALER that pipelines requests and collects replies by id."""

    def __init__(self, endpoint: str):
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(endpoint)
        self.replies: dict[str, dict] = {}

    def send(self, command: str, **properties) -> str:
        msg_id = uuid.uuid4().hex
        self.socket.send(json.dumps({"id": msg_id, "command": command, "properties": properties}).encode())
        return msg_id

    def collect(self, ids, timeout: float = 30.0) -> list[dict]:
        """The replies to `ids`, in order; AssertionError if one does not come within `timeout`."""
        def all_in():
            while self.socket.poll(0):
                reply = json.loads(self.socket.recv())
                self.replies[reply["id"]] = reply
            return all(i in self.replies for i in ids)
        wait_for(all_in, timeout, interval=0.02, message=f"{len(ids)} replies")
        return [self.replies[i] for i in ids]

    def call(self, command: str, **properties) -> dict:
        return self.collect([self.send(command, **properties)])[0]

    def close(self) -> None:
        self.socket.close(linger=0)


def answers(client) -> bool:
    """True once the daemon behind `client` (gcircus.client.Client) answers `list`; False while it is not up yet."""
    try:
        return client.call("list")["status"] == "ok"
    except Exception:  # noqa: BLE001 - not up yet
        return False
