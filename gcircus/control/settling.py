"""What `start --waiting` and `restart --waiting` wait for: the command itself, then the watcher settling.

A start's own result comes once its processes are spawned (and ready); a watcher that then backs off is not started
yet, and one that ends failed never is. So a waiting reply is answered once the watcher settles: active, failed,
stopped, or waiting for a dependency that failed (or is stopped: nothing will start it). A back-off that can never
end (max_retry = -1, or gcircusd short of resources) counts as settled too, as at start-up (Arbiter.wait_started):
the reply would otherwise wait forever. Everything here is AsyncResults and links, so a waiting reply holds no
greenlet.
"""
from __future__ import annotations

from collections.abc import Callable

import gevent.event

from gcircus.states import ACTIVE, BACKOFF, FAILED, STARTING, STOPPED
from gcircus.watcher import Watcher
from gcircus.wire.errors import CommandError

# A command already done, for watchers whose start ran elsewhere (Arbiter.start_watchers): only settling is awaited.
DONE = gevent.event.AsyncResult()
DONE.set(None)


def settled(watcher: Watcher, command: gevent.event.AsyncResult) -> gevent.event.AsyncResult:
    """`command`'s value once it is done and `watcher` settled active; else a CommandError naming the watcher and
    why (the command's own failure passes through as it is)."""
    result = gevent.event.AsyncResult()

    def command_done(done) -> None:
        if not done.successful():
            result.set_exception(done.exception)
        else:
            _when_settled(watcher, lambda problem: result.set(done.value) if problem is None
                          else result.set_exception(CommandError(problem)))
    command.rawlink(command_done)
    return result


def all_settled(pairs: list[tuple[Watcher, gevent.event.AsyncResult]]) -> gevent.event.AsyncResult:
    """Like `settled` for several watchers: their values in order, or one CommandError naming each that failed."""
    result = gevent.event.AsyncResult()
    outcomes = [settled(watcher, command) for watcher, command in pairs]

    def one_done(_=None) -> None:
        if result.ready() or not all(o.ready() for o in outcomes):
            return
        failures = [o.exception for o in outcomes if not o.successful()]
        if not failures:
            result.set([o.value for o in outcomes])
        elif len(failures) == 1:
            result.set_exception(failures[0])
        else:
            result.set_exception(CommandError(f"{len(failures)} watchers did not start: "
                                              + "; ".join(str(f) for f in failures)))
    for outcome in outcomes:
        outcome.rawlink(one_done)
    if not outcomes:
        result.set([])
    return result


def _when_settled(watcher: Watcher, then: Callable[[str | None], None]) -> None:
    """then(None) once `watcher` is active (or stopped), then(why) once it cannot become active (settle)."""
    def check(_=None) -> None:
        done, problem = settle(watcher)
        if done:
            then(problem)
        else:
            watcher.state_changed().rawlink(check)
    check()


def settle(watcher: Watcher) -> tuple[bool, str | None]:
    """(whether a start of `watcher` has settled, why it failed or None).

    `stopping` is not an answer: a crash loop passes through it on its way to backoff or failed. And `stopped` is
    no failure of the start: a stop or quit came after it, or a hook refused
    the start, whose reply has always been ok (as in Circus).
    """
    state = watcher.status()
    if state in (ACTIVE, STOPPED):
        return True, None
    if state == BACKOFF and watcher.respawn_policy.endless:
        return True, f"watcher {watcher.name!r} is backing off and retries forever: {watcher.reason}"
    if state in (FAILED, STARTING):
        problem = watcher.start_problem()  # failed, or waits for a dependency that failed
        if problem is None and watcher.waits_for_stopped():
            problem = f"watcher {watcher.name!r} is {watcher.reason}: nothing starts it"
        return problem is not None, problem
    return False, None
