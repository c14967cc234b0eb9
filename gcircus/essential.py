"""Essential watchers: a watcher gcircusd cannot usefully run without (`essential = true`).

In a container gcircusd is the main process: when the service it exists for is gone for good, the useful thing is
to stop everything and exit non-zero, so that the orchestrator restarts the pod (or systemd the unit) instead of
keeping a supervisor that supervises nothing. "Gone for good" is what a watcher's own lifecycle already says: it
moved to `failed` (it gave up: a crash loop that exhausted max_retry, or spawns that keep failing), or, with
`respawn = false`, its last process exited while it was running. A stop that someone asked for (an operator's
`stop`, a restart, gcircusd's own shutdown) moves the watcher to `stopping` first, so it never counts.

The watch reads the watcher events the arbiter forwards (the `state` and `reap` events): it changes nothing in the
watchers' lifecycle, and a watcher made essential at run time (`set`, reloadconfig) counts from then on.
"""
from __future__ import annotations

from collections.abc import Callable

from gcircus.events import Event
from gcircus.states import FAILED, RUNNING, STATE_EVENT

REAP_EVENT = "reap"


class EssentialWatch:
    """Calls `on_failure(reason)` (once) when an essential watcher of `arbiter` fails while gcircusd is running.

    `stopping()` says whether gcircusd is already shutting down: a failure then is part of the shutdown, not news.
    The listener runs in the watcher's greenlet: `on_failure` must not block (it starts the stop in the background).
    """

    def __init__(self, arbiter, on_failure: Callable[[str], None], stopping: Callable[[], bool]):
        self.arbiter, self.on_failure, self.stopping = arbiter, on_failure, stopping
        self.failure: str | None = None  # why gcircusd stops, once an essential watcher failed

    def start(self) -> None:
        self.arbiter.subscribe(self)

    def stop(self) -> None:
        self.arbiter.unsubscribe(self)

    def __call__(self, event: Event) -> None:
        if event.name not in (STATE_EVENT, REAP_EVENT) or self.failure is not None or self.stopping():
            return
        try:
            watcher = self.arbiter.get_watcher(event.watcher)
        except KeyError:  # removed meanwhile
            return
        if not watcher.essential:
            return
        reason = failure_of(watcher, event)
        if reason is not None:
            self.failure = f"essential watcher {watcher.name!r} {reason}"
            self.on_failure(self.failure)


def failure_of(watcher, event: Event) -> str | None:
    """Why `event` means that essential `watcher` is gone for good, or None if it does not."""
    if event.name == STATE_EVENT and event.fields["state"] == FAILED:
        return f"failed: {event.fields['reason'] or 'it gave up'}"
    if (event.name == REAP_EVENT and not watcher.respawn and watcher.status() in RUNNING
            and watcher.numprocesses > 0 and not watcher.processes):
        # The reap is published once the process is forgotten, before the watcher acts on the exit: with respawn
        # off and none left, nothing will run again until an operator starts it.
        return (f"has no process left (respawn = false): its last process (pid {event.fields['process_pid']}) "
                f"exited with {describe_exit_code(event.fields['exit_code'])}")
    return None


def describe_exit_code(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    return f"signal {-code}" if code < 0 else f"code {code}"
