"""A watcher's `state` events as a real subscriber receives them (a SUB socket on gcircusd's PUB endpoint)."""
from __future__ import annotations

import json
import time

from gcircus.consumer import Consumer


class StateEvents:
    """The `watcher.NAME.state` events of one watcher, received on a SUB socket, as (previous, state, reason) moves.

    PUB/SUB drops what is published before a subscription is live, so `live()` proves it is: it `set`s an option of
    the watcher (which publishes `updated` on the same socket) until one such event arrives.
    """

    def __init__(self, running, name: str):
        self.running = running
        self.name = name
        self.consumer = Consumer([f"watcher.{name}.state".encode(), f"watcher.{name}.updated".encode()],
                                 endpoint=running.pubsub)
        self.moves: list[tuple[str, str, str]] = []

    def live(self, timeout: float = 10.0) -> StateEvents:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.running.call("set", name=self.name, options={"graceful_timeout": 2})
            if self._receive(0.2) == "updated":
                return self
        raise AssertionError(f"no live subscription to {self.name}'s events within {timeout}s")

    def until(self, state: str, timeout: float = 60.0) -> list[tuple[str, str]]:
        """Receive until the watcher moves to `state`; return every move so far as (previous, state) pairs."""
        deadline = time.monotonic() + timeout
        while not self.moves or self.moves[-1][1] != state:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name} did not move to {state} within {timeout}s: {self.moves}")
            self._receive(remaining)
        return [(previous, new) for previous, new, _ in self.moves]

    def reason_of(self, state: str) -> str:
        """The reason of the first move to `state`."""
        return next(reason for _, new, reason in self.moves if new == state)

    def _receive(self, timeout: float) -> str | None:
        """One event (None if none came): a move is recorded (a new reason for the same state is not a move)."""
        event = self.consumer.recv(timeout)
        if event is None:
            return None
        action = event[0].decode().rsplit(".", 1)[1]
        body = json.loads(event[1])
        if action == "state" and body["state"] != body["previous"]:
            self.moves.append((body["previous"], body["state"], body["reason"]))
        return action

    def close(self) -> None:
        self.consumer.close()
