"""The queue of operator commands (start, stop, restart, reload) on one watcher: bounded, coalescing, preemptible.

Commands run one at a time, in arrival order, in one runner greenlet per watcher, so a queued command costs a small
object, not a greenlet. What a client or a plugin can pile up is bounded three ways:
- a command queued right behind an identical one that has not started yet shares it: both callers get the same
  result (a thousand restarts sent in a burst are one restart);
- past `limit` waiting commands, a new one is refused with `QueueFull`;
- a stop cancels every command waiting behind the running one (they fail with `Cancelled`), so a shutdown never
  waits behind a backlog of restarts.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Hashable

import gevent
import gevent.event
import gevent.lock

log = logging.getLogger(__name__)

MAX_QUEUED_COMMANDS = 64  # commands waiting on one watcher behind the running one (identical ones share a slot)


class QueueRefused(Exception):
    """The command was not queued, or was dropped from the queue; the message says why."""


class QueueFull(QueueRefused):
    """Too many commands are already waiting on this watcher."""


class Cancelled(QueueRefused):
    """A stop (or gcircusd's shutdown) cancelled this command before it ran."""


@dataclasses.dataclass(slots=True, eq=False)
class _Operation:
    key: Hashable
    run: Callable[[], object]
    preempt: bool
    result: gevent.event.AsyncResult = dataclasses.field(default_factory=gevent.event.AsyncResult)


class CommandQueue:
    """Runs submitted operations one at a time, in order, in a runner greenlet of its own, each holding `lock`
    (the watcher's, which its work outside the queue takes too: respawns, back-offs, `set`)."""

    def __init__(self, owner: str, lock: gevent.lock.RLock, limit: int = MAX_QUEUED_COMMANDS):
        self.owner = owner
        self.lock = lock
        self.limit = limit
        self._waiting: collections.deque[_Operation] = collections.deque()
        self._runner: gevent.Greenlet | None = None
        self._refusing: str | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def submit(self, key: Hashable, run: Callable[[], object], preempt: bool = False) -> gevent.event.AsyncResult:
        """Queue `run` (or share the last waiting operation if its key is `key`); return its result. Never blocks.

        `preempt` (a stop) first cancels every waiting operation that is not itself preemptive, and is accepted
        even while new commands are refused. Called from the runner itself (a command that issues another on its
        own watcher), `run` runs at once: queueing it behind the caller would deadlock.
        """
        if self._runner is not None and gevent.getcurrent() is self._runner:
            result = gevent.event.AsyncResult()
            try:
                result.set(run())
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the result
                result.set_exception(exc)
            return result
        if preempt:
            self.cancel_waiting(self._refusing or f"watcher {self.owner!r} was stopped before this command ran")
        elif self._refusing is not None:
            raise Cancelled(self._refusing)
        if self._waiting and self._waiting[-1].key == key:  # right behind an identical one: the same work
            return self._waiting[-1].result
        if len(self._waiting) >= self.limit:
            raise QueueFull(f"watcher {self.owner!r} already has {len(self._waiting)} commands waiting (limit "
                            f"{self.limit}); try again once they have run")
        operation = _Operation(key, run, preempt)
        self._waiting.append(operation)
        if self._runner is None:
            self._runner = gevent.spawn(self._run_waiting)
        return operation.result

    def cancel_waiting(self, reason: str) -> None:
        """Fail every waiting operation with Cancelled(reason), except the preemptive ones (stops): they still run."""
        cancelled = [operation for operation in self._waiting if not operation.preempt]
        self._waiting = collections.deque(operation for operation in self._waiting if operation.preempt)
        for operation in cancelled:
            operation.result.set_exception(Cancelled(reason))
        if cancelled:
            log.info("watcher %r: %d queued command(s) cancelled: %s", self.owner, len(cancelled), reason)

    def refuse(self, reason: str | None) -> None:
        """Refuse (Cancelled) every new submission with `reason` from now on; None accepts them again."""
        self._refusing = reason

    def _run_waiting(self) -> None:
        try:
            while self._waiting:
                operation = self._waiting.popleft()
                try:
                    with self.lock:
                        operation.result.set(operation.run())
                except BaseException as exc:  # handed to whoever waits on the result (GreenletExit included)
                    operation.result.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._runner = None
