"""Helpers for the control-plane hardening tests: a config on free ports and a raw pipelining DEALER."""
from __future__ import annotations

import contextlib
import json
import signal
import textwrap
import uuid

import zmq
from gevent import subprocess as gsubprocess

from tests.conftest import GCIRCUSD, free_port, wait_for


def make_config(tmp_path, watcher: str, endpoint: str | None = None, circus: str = "") -> tuple[str, str]:
    """circus.ini with the control endpoint (a free port unless given), `circus` lines, then `watcher`."""
    endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
    path = tmp_path / "circus.ini"
    path.write_text(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
                    + textwrap.dedent(circus) + "\n" + textwrap.dedent(watcher))
    return str(path), endpoint


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


def spawned(record) -> list[str]:
    """The pids a watcher command recorded, one per spawn (`echo $$ >> record`)."""
    return record.read_text().split() if record.exists() else []


@contextlib.contextmanager
def daemon_with_fd_limit(tmp_path, config: str, nofile: int):
    """gcircusd on `config` under `prlimit --nofile=N`; yields (process, output reader); stopped (then killed) after."""
    log_path = tmp_path / "gcircusd.out"
    with open(log_path, "wb") as log:
        daemon = gsubprocess.Popen(["prlimit", f"--nofile={nofile}:{nofile}", "--"] + GCIRCUSD + [config],
                                   stdout=log, stderr=gsubprocess.STDOUT)
    try:
        yield daemon, lambda: log_path.read_text(errors="replace")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except gsubprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
