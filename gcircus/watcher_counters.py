"""Totals of one watcher's life since it was built, for gcircusd's metrics: counters that a start, a stop or a
reload never reset (the respawn policy's own counts are consecutive ones, reset when things work again)."""
from __future__ import annotations


class WatcherCounters:
    """What happened to a watcher's processes, counted as it happens (a few integer additions: no sampling)."""

    __slots__ = ("restarts", "backoffs", "spawn_failures", "last_exit_code", "ready_count", "ready_seconds",
                 "last_ready_seconds")

    def __init__(self):
        self.restarts = 0  # processes replaced after exiting on their own, or failing their checks
        self.backoffs = 0  # times the watcher backed off (a crash loop, or spawns that keep failing)
        self.spawn_failures = 0  # spawn attempts that failed
        self.last_exit_code: int | None = None  # of the last process reaped (-signum after a signal)
        self.ready_count = 0  # processes that became ready, and the seconds they took in total
        self.ready_seconds = 0.0
        self.last_ready_seconds: float | None = None

    def became_ready(self, seconds: float) -> None:
        self.ready_count += 1
        self.ready_seconds += seconds
        self.last_ready_seconds = seconds
