"""Where a command's long part runs, and how a `--waiting` reply waits for it, within bounds clients cannot stretch.

A command's long part is either already queued on watchers (`Queued`: their command queues run it) or a `Deferred`
to run here, in one of two bounded pools: stops and quits have a pool of their own, so a pool full of restarts or
`incr`s never delays a shutdown. A waiting reply holds no greenlet: it is a callback linked to the operation's
result, and how many may wait at once is capped too. Past a cap, the request gets an error reply (errno 5) at once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import gevent.event
import gevent.pool

from gcircus.command_queue import QueueRefused
from gcircus.wire.errors import COMMAND_ERROR, ControlError

log = logging.getLogger(__name__)

MAX_OPERATIONS = 128  # Deferred commands running at once (restart of every watcher, incr, set, add, rm, kill...)
MAX_PREEMPTING = 16  # stops and quits running at once, in a pool of their own
MAX_WAITING_REPLIES = 4096  # `--waiting` replies not sent yet, all clients together


class Busy(ControlError):
    """A cap of this module is reached: the request is refused, nothing was done."""

    errno = COMMAND_ERROR


class Operations:
    """The bounded pools that run Deferred commands and the count of waiting replies."""

    def __init__(self):
        self._pools = {False: gevent.pool.Pool(MAX_OPERATIONS), True: gevent.pool.Pool(MAX_PREEMPTING)}
        self.waiting_replies = 0
        self._watched: set = set()  # queued results whose failure is logged once, however many casts share them
        self._no_waiting_reply = gevent.event.Event()
        self._no_waiting_reply.set()

    def check_reply_can_wait(self) -> None:
        """Busy when MAX_WAITING_REPLIES replies already wait (checked before the command is carried out)."""
        if self.waiting_replies >= MAX_WAITING_REPLIES:
            raise Busy(f"server busy: {self.waiting_replies} replies are already waiting for their commands to "
                       f"finish (limit {MAX_WAITING_REPLIES}); try again later, or without --waiting")

    def run(self, run: Callable[[], object], preempts: bool) -> gevent.Greenlet:
        """Start `run` in its pool; Busy when that pool is full. Failures are logged unless someone links to it."""
        pool = self._pools[preempts]
        if pool.full():
            raise Busy(f"server busy: {len(pool)} {'stop and quit' if preempts else 'long'} commands are already "
                       f"running (limit {pool.size}); try again later")
        return pool.spawn(run)

    def reply_when_done(self, sources: list, shape: Callable[[list], object],
                        send: Callable[[object, BaseException | None], None]) -> None:
        """Once every source (an AsyncResult or a Greenlet) is ready: send(shape(values), None), or send(None, exc)."""
        self.waiting_replies += 1
        self._no_waiting_reply.clear()

        def all_done() -> None:
            self.waiting_replies -= 1
            try:
                fields, failure = None, first_failure(sources)
                if failure is None:
                    try:
                        fields = shape([s.value for s in sources])
                    except Exception as exc:  # noqa: BLE001 - becomes the error reply
                        failure = exc
                send(fields, failure)
            finally:
                if not self.waiting_replies:
                    self._no_waiting_reply.set()
        when_all_ready(sources, all_done)

    @staticmethod
    def when_done(sources: list, done: Callable[[BaseException | None], None]) -> None:
        """Once every source is ready, done(the first failure, or None): a command nobody waits for is audited so."""
        when_all_ready(sources, lambda: done(first_failure(sources)))

    def log_failures(self, name: str, sources: list) -> None:
        """Nobody waits for these results: log a failure (once per result, however many requests share it)."""
        for source in sources:
            if source in self._watched:
                continue
            self._watched.add(source)

            def done(result, name=name):
                self._watched.discard(result)
                log_failure(name, result)
            source.rawlink(done)

    def wait_replies_sent(self, timeout: float) -> bool:
        """Block until no reply waits any more (or `timeout`): a closing server lets them go out first."""
        return self._no_waiting_reply.wait(timeout)

    def running(self) -> list[gevent.Greenlet]:
        return [g for pool in self._pools.values() for g in pool]


def log_failure(name: str, source) -> None:
    """Link target for a command nobody waits for: its failure is logged (a refusal without a traceback)."""
    exc = source.exception
    if exc is None or isinstance(exc, gevent.GreenletExit):
        return
    if isinstance(exc, (QueueRefused, ControlError)):
        log.warning("command %s was not carried out: %s", name, exc)
    else:
        log.error("command %s failed after its reply was sent", name, exc_info=(type(exc), exc, exc.__traceback__))


def first_failure(sources: list) -> BaseException | None:
    """The exception of the first source (ready) that failed, or None."""
    return next((s.exception for s in sources if not s.successful()), None)


def when_all_ready(sources: list, callback: Callable[[], None]) -> None:
    """callback() once every source is ready: linked, so nothing waits meanwhile; at once when there is none."""
    remaining = [len(sources)]

    def one_done(_source=None) -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            callback()

    if not sources:
        callback()
    for source in sources:
        source.rawlink(one_done)
