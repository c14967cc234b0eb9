"""Recorders of what a watcher or an arbiter did: the events they publish, the calls that reached them."""
from __future__ import annotations

import gevent.event

from gcircus.events import LIFECYCLE_EVENTS, message, topic


class WatcherRecorder:
    """Collects a watcher's events as (event, message) pairs: Circus's events, and gcircus's lifecycle events
    (state moves, readiness) too when `lifecycle` is true."""

    def __init__(self, watcher, lifecycle: bool = False):
        self.events: list[tuple[str, dict]] = []

        def record(event):
            if lifecycle or event.name not in LIFECYCLE_EVENTS:
                self.events.append((event.name, message(event)))
        watcher.subscribe(record)

    def names(self) -> list[str]:
        return [e for e, _ in self.events]

    def of(self, name: str) -> list[dict]:
        return [m for e, m in self.events if e == name]


class ArbiterRecorder:
    """Every event the arbiter publishes, as (topic, message); lifecycle events only when `lifecycle` is true."""

    def __init__(self, arbiter, lifecycle: bool = False):
        self.events: list[tuple[str, dict]] = []

        def record(event):
            if lifecycle or event.name not in LIFECYCLE_EVENTS:
                self.events.append((topic(event), message(event)))
        arbiter.subscribe(record)

    def topics(self, name: str | None = None) -> list[str]:
        return [t for t, _ in self.events if name is None or t.startswith(f"watcher.{name}.")]

    def of(self, topic: str) -> list[dict]:
        return [m for t, m in self.events if t == topic]


def entered(obj, method: str) -> gevent.event.Event:
    """Wrap `obj.method` (on this instance only) so the returned Event is set when a call enters it; the original
    then runs in the caller's greenlet. The Event shows that a request reached the object: if the original blocks
    (waiting for a lock), it is blocked by the time a greenlet waiting on the Event wakes up."""
    reached = gevent.event.Event()
    original = getattr(obj, method)

    def wrapper(*args, **kwargs):
        reached.set()
        return original(*args, **kwargs)
    setattr(obj, method, wrapper)
    return reached
