"""Recorders of the events a watcher or an arbiter publishes, for tests that check what happened and in what order."""
from __future__ import annotations


class WatcherRecorder:
    """Collects a watcher's events as (event, message) pairs."""

    def __init__(self, watcher):
        self.events: list[tuple[str, dict]] = []
        watcher.subscribe(lambda w, event, msg: self.events.append((event, msg)))

    def names(self) -> list[str]:
        return [e for e, _ in self.events]

    def of(self, name: str) -> list[dict]:
        return [m for e, m in self.events if e == name]


class ArbiterRecorder:
    """Every event the arbiter publishes, as (topic, message)."""

    def __init__(self, arbiter):
        self.events: list[tuple[str, dict]] = []
        arbiter.subscribe(lambda topic, msg: self.events.append((topic, msg)))

    def topics(self, name: str | None = None) -> list[str]:
        return [t for t, _ in self.events if name is None or t.startswith(f"watcher.{name}.")]

    def of(self, topic: str) -> list[dict]:
        return [m for t, m in self.events if t == topic]
