"""start and stop of named watchers along their dependencies (`depends_on`), for the lifecycle executors.

Following the graph is what the operator asks for (--with-dependencies, --with-dependents), never a side effect:
a plain `start NAME` whose dependency is down is refused with the name to start, rather than quietly starting
more than was named, or leaving NAME waiting for something nobody is going to start.
"""
from __future__ import annotations

from gcircus.states import ACTIVE, FAILED, SETTLED, STOPPED, STOPPING
from gcircus.wire.errors import MessageError

# A dependency in one of these states is not coming up by itself: a watcher waiting for it would wait forever.
DOWN = frozenset({STOPPED, STOPPING, FAILED})
# Seconds between two looks at the dependencies of a watcher that is still not active.
RECHECK = 1.0


def _names(watchers) -> str:
    return ", ".join(w.name for w in watchers)


def _down(watcher) -> bool:
    """Not coming up by itself: stopped, stopping or failed, but for an on_demand watcher waiting for a connection
    (stopped until one arrives, then it starts, and whoever waits for it goes on)."""
    if watcher.status() == STOPPED and watcher.on_demand and watcher.autostart:
        return False
    return watcher.status() in DOWN


def check_dependencies_up(arbiter, watchers: list, action: str = "start") -> None:
    """MessageError naming the direct dependencies of `watchers` (those not being started with them) that are
    down, with the way to start them; nothing is started then."""
    chosen = set(watchers)
    for watcher in watchers:
        down = [dep for dep in arbiter.dependencies_of(watcher, recursive=False) if dep not in chosen and _down(dep)]
        if down:
            states = ", ".join(f"{dep.name} is {dep.status()}" for dep in down)
            raise MessageError(f"cannot {action} {watcher.name}: it depends on {_names(down)} ({states}); start "
                               f"{'it' if len(down) == 1 else 'them'} first, or use start --with-dependencies")


def wait_active(arbiter, watcher, needed_by=None) -> None:
    """Block until `watcher` is active; MessageError if it ends stopped or failed instead (saying who needed it),
    or if it is left waiting for a dependency that went down meanwhile (which would hold this command forever)."""
    while True:
        try:
            state = watcher.wait_for_state(SETTLED, RECHECK)
        except TimeoutError:
            state = watcher.status()
        if state == ACTIVE:
            return
        needing = f"; {needed_by.name} was not started" if needed_by is not None else ""
        if state in SETTLED:
            problem = watcher.start_problem() or f"watcher {watcher.name!r} is {state}"
            raise MessageError(f"{problem}{needing}")
        down = [dep for dep in arbiter.dependencies_of(watcher, recursive=False) if _down(dep)]
        if down:
            states = ", ".join(f"{dep.name} is {dep.status()}" for dep in down)
            raise MessageError(f"watcher {watcher.name!r} is not active: it waits for {_names(down)} ({states})"
                               f"{needing}")


def start_with_dependencies(arbiter, watchers: list) -> dict | None:
    """Start what `watchers` depend on, then them, in start order, each waited until active before the next.

    Several watchers: only their autostart ones, as a plain start of several does (their dependencies all).
    With one watcher, its start's result as `info`.
    """
    named = watchers if len(watchers) == 1 else [w for w in watchers if w.autostart]
    wanted = set(named)
    for watcher in named:
        wanted.update(arbiter.dependencies_of(watcher))
    result = None
    for watcher in [w for w in arbiter.iter_watchers() if w in wanted]:
        if watcher in named or watcher.status() != ACTIVE:  # an active dependency is left alone
            needed_by = next((w for w in arbiter.dependents_of(watcher) if w in wanted), None)
            result = watcher.start()
            wait_active(arbiter, watcher, needed_by)
    return {"info": result} if len(watchers) == 1 else None


def stop_with_dependents(arbiter, watchers: list) -> dict | None:
    """Stop what depends on `watchers`, then them, in stop order (the last to start stops first), one at a time."""
    wanted = set(watchers)
    for watcher in watchers:
        wanted.update(arbiter.dependents_of(watcher))
    for watcher in [w for w in arbiter.iter_watchers(reverse=False) if w in wanted]:
        watcher.stop()
    return {"info": None} if len(watchers) == 1 else None


def restart_with_dependents(arbiter, watchers: list) -> dict | None:
    """Stop the running dependents of `watchers` (stop order), restart them (each waited until active), then start
    those dependents again in start order, each waited until active: nothing runs against a restarting dependency.

    A dependent that was stopped stays stopped. With one watcher, its restart's result as `info`.
    """
    named = set(watchers)
    running = {dep for watcher in watchers for dep in arbiter.dependents_of(watcher)
               if dep not in named and dep.status() not in DOWN}
    for dependent in [w for w in arbiter.iter_watchers(reverse=False) if w in running]:
        dependent.stop()
    result = None
    for watcher in [w for w in arbiter.iter_watchers() if w in named]:
        result = watcher.restart()
        wait_active(arbiter, watcher)
    for dependent in [w for w in arbiter.iter_watchers() if w in running]:
        dependent.start()
        wait_active(arbiter, dependent)
    return {"info": result} if len(watchers) == 1 else None
