"""Waiting for a condition: every test polls with a deadline, never sleeps for a fixed time."""
from __future__ import annotations

import time

import gevent


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.005, message: str = "condition"):
    """Poll `predicate` (cooperatively) until it returns a truthy value or `timeout` passes; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        gevent.sleep(interval)
