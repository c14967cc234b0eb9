"""A steady HTTP load on 127.0.0.1:PORT while gcircusd replaces the workers behind it: every result is counted
against the phase that was current when its request started, so a test can say which operation lost a request.

Real threads with the stdlib's blocking http.client (the test process is not monkey-patched), a new connection per
request, each with a timeout. A worker answers JSON with at least its `pid` and a `tag`.
"""
from __future__ import annotations

import http.client
import json
import threading
import time

from tests.support.waiting import wait_for


class Load:
    """Threads sending GET requests in a loop; results are counted per phase."""

    def __init__(self, port: int, threads: int = 6, timeout: float = 10.0):
        self.port = port
        self.timeout = timeout
        self.phase = "warmup"
        self.lock = threading.Lock()
        self.ok: dict[str, int] = {}
        self.failures: dict[str, list[str]] = {}
        self.served_by: dict[str, set] = {}  # phase -> {(pid, tag)}
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(self.timeout + 5)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            phase = self.phase
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                conn.request("GET", "/zero-downtime", headers={"Connection": "close"})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise AssertionError(f"HTTP {response.status}: {body[:200]!r}")
                reply = json.loads(body)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with self.lock:
                    self.failures.setdefault(phase, []).append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)
            else:
                with self.lock:
                    self.ok[phase] = self.ok.get(phase, 0) + 1
                    self.served_by.setdefault(phase, set()).add((reply["pid"], reply["tag"]))
            finally:
                conn.close()

    def begin(self, phase: str) -> None:
        self.phase = phase

    def served(self, phase: str) -> set:
        with self.lock:
            return set(self.served_by.get(phase, ()))

    def wait_served_by(self, phase: str, pids, tag: str = "") -> None:
        """Until a request started in `phase` was answered by one of `pids` (the new workers)."""
        wait_for(lambda: any(pid in pids and t == tag for pid, t in self.served(phase)), 20, interval=0.02,
                 message=f"a request served by the new workers during {phase}")

    def steady(self) -> None:
        """A quiet stretch between two operations: it ends once a few requests have been served in it."""
        self.phase = "steady"
        with self.lock:
            start = self.ok.get("steady", 0)
        wait_for(lambda: self.ok.get("steady", 0) >= start + 5, 10, interval=0.01, message="requests between phases")
