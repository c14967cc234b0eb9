"""Clients for the control benchmark: Circus's JSON-over-DEALER protocol and supervisord's XML-RPC.

Each client is synchronous and owns its socket, so N threads with N clients are N independent
connections. Latency samples are round trips measured with perf_counter around one call.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
import xmlrpc.client
from collections.abc import Callable

import zmq


class ControlError(RuntimeError):
    """The daemon answered with an error reply (Circus's "status": "error")."""

    def __init__(self, reply: dict):
        super().__init__(reply.get("reason"))
        self.reply = reply


class CircusProtocolClient:
    """One DEALER on a Circus-compatible control endpoint (what circusctl does, minus the import cost)."""

    def __init__(self, endpoint: str, timeout: float = 30.0, curve=None):
        """`curve`: keys with an `apply(socket)` (gcircus.wire.curve.ClientKeys) for an endpoint requiring CURVE."""
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.setsockopt(zmq.IDENTITY, uuid.uuid4().hex.encode())
        if curve is not None:
            curve.apply(self.socket)
        self.socket.connect(endpoint)
        self.timeout_ms = int(timeout * 1000)
        self.conflicts = 0

    def call(self, command: str, **properties) -> dict:
        msg_id = uuid.uuid4().hex
        self.socket.send(json.dumps({"id": msg_id, "command": command, "properties": properties}).encode())
        while True:
            if not self.socket.poll(self.timeout_ms):
                raise TimeoutError(f"{command}: no reply in {self.timeout_ms / 1000:g}s")
            reply = json.loads(self.socket.recv())
            if reply.get("id") == msg_id:
                break
        if reply.get("status") == "error":
            raise ControlError(reply)
        return reply

    def call_through_conflicts(self, command: str, **properties) -> tuple[float, float, dict]:
        """`call`, retried after 10 ms while Circus answers with a lock conflict (`arbiter is already running ...`);
        the conflicts are counted in `self.conflicts`. Returns the wall-clock time the successful attempt was sent,
        its round trip in seconds and its reply: only that attempt is timed."""
        while True:
            sent, t0 = time.time(), time.perf_counter()
            try:
                reply = self.call(command, **properties)
                return sent, time.perf_counter() - t0, reply
            except ControlError as exc:
                if "already running" not in str(exc) and "restarting" not in str(exc):
                    raise
                self.conflicts += 1
                time.sleep(0.01)

    def close(self) -> None:
        self.socket.close(linger=0)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class _UnixTransport(xmlrpc.client.Transport):
    """xmlrpc.client over a unix socket, keeping the connection alive between calls."""

    def __init__(self, path: str, timeout: float):
        super().__init__()
        self.path, self.timeout = path, timeout

    def make_connection(self, host):
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        self._connection = host, _UnixHTTPConnection(self.path, self.timeout)
        return self._connection[1]


class SupervisorClient:
    """supervisord's XML-RPC interface on its unix socket (what supervisorctl status does)."""

    def __init__(self, sock_path: str, timeout: float = 30.0):
        self.proxy = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixTransport(sock_path, timeout))

    def all_process_info(self) -> list[dict]:
        return self.proxy.supervisor.getAllProcessInfo()

    def close(self) -> None:
        self.proxy("close")()


def sample_serial(call: Callable[[], object], reps: int, budget: float, warmup: int = 10) -> list[float]:
    """Round-trip seconds of up to `reps` sequential calls, stopping early after `budget` seconds."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < reps and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return samples


def sample_concurrent(make_client: Callable[[], object], call: Callable[[object], object], clients: int,
                      reps_each: int, budget: float) -> tuple[list[float], float, int]:
    """`clients` threads, each with its own client, each doing up to `reps_each` calls back to back.

    All threads start together (a barrier); returns (latency samples, wall seconds, errors).
    """
    conns = [make_client() for _ in range(clients)]
    for c in conns:
        call(c)  # connect and warm up before the clock starts
    barrier = threading.Barrier(clients + 1)
    results: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients

    def worker(i: int) -> None:
        barrier.wait()
        deadline = time.perf_counter() + budget
        out = results[i]
        while len(out) < reps_each and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                call(conns[i])
            except Exception:  # noqa: BLE001 - counted and reported, the other threads go on
                errors[i] += 1
                continue
            out.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in conns:
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass
    return [s for r in results for s in r], wall, sum(errors)

