"""What the arbiter runs beside its watchers: services it starts and stops, and work requested in the background.

Both live below the arbiter so that it can own them without knowing what they are: the daemon's wiring
(gcircus.daemon) attaches the control channel, the publisher, stats, discovery and the plugin manager as Services.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import gevent

from gcircus.errors import ConfigError

log = logging.getLogger(__name__)


class Service(Protocol):
    """Something the arbiter starts with itself (in the order attached) and stops with itself (in reverse)."""

    def start(self) -> None:
        """Start serving; an exception means it did not start (the arbiter then stops those started before it)."""

    def stop(self) -> None:
        """Stop serving and release what start() took; called once per successful start()."""


class CoalescedRuns:
    """Runs `job` in one owned greenlet however many requests arrive: a request made while it runs is served by
    one more run, so a flood of requests costs at most two runs and one greenlet (the job re-reads its input).

    Nobody waits for a run's result: a ConfigError is logged as a warning (`what` was not carried out), anything
    else as an error with its traceback.
    """

    def __init__(self, job: Callable[[], object], what: str):
        self.job = job
        self.what = what
        self.requested = False
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        """Nothing to start (a Service of its owner): runs begin on request."""

    def request(self) -> None:
        self.requested = True
        if self.greenlet is None or self.greenlet.dead:
            self.greenlet = gevent.spawn(self._run_while_requested)

    def stop(self) -> None:
        """Drop a pending request and kill a run in progress (its owner is shutting down: nothing more is applied)."""
        self.requested = False
        greenlet, self.greenlet = self.greenlet, None
        if greenlet is not None and greenlet is not gevent.getcurrent():
            greenlet.kill(block=True)

    def _run_while_requested(self) -> None:
        while self.requested:
            self.requested = False
            try:
                self.job()
            except ConfigError as exc:
                log.warning("%s was not carried out: %s", self.what, exc)
            except Exception:  # noqa: BLE001 - nobody waits for this result: log it
                log.exception("%s failed after its reply was sent", self.what)
