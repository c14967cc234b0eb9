"""A watcher's states, a process's states, and the moves between them, declared once.

The watcher changes state only through `Watcher._move_to`, which checks the move against TRANSITIONS and publishes
it (the `state` event, with the new and the previous state). The first four states are Circus's, with Circus's
meaning, so `status` replies keep working for Circus clients; `backoff` and `failed` are gcircus's:

- `starting`: processes are being spawned, or are spawned but not all ready yet, or the watcher waits for the
  watchers it depends on (its status text says which).
- `active`: every process of the start was ready. A replacement spawned later shows its own readiness (`procs`);
  the watcher stays active, so one worker's restart does not take a whole service out of a load balancer.
- `backoff`: a crash loop or a failing spawn is being waited out; the watcher knows when it retries.
- `failed`: it gave up (max_retry back-offs, or spawn attempts); it stays so until an operator starts it.
"""
from __future__ import annotations

STOPPED, STARTING, ACTIVE, STOPPING = "stopped", "starting", "active", "stopping"
BACKOFF, FAILED = "backoff", "failed"

# Each state, and the states a watcher may move to from it. Any state may also move to stopped when the watcher gives
# up its processes without stopping them (`rm --nostop`), and staying in a state is no move.
TRANSITIONS: dict[str, frozenset[str]] = {
    STOPPED: frozenset({STARTING, STOPPING}),  # start; stop what an earlier life left behind
    STARTING: frozenset({ACTIVE, STOPPING, BACKOFF, FAILED}),  # ready; stop; nothing could spawn (retry, give up)
    # stop or crash loop; an on_demand watcher whose processes all exited; nothing left to stop: back off, give up
    ACTIVE: frozenset({STOPPING, STOPPED, BACKOFF, FAILED}),
    STOPPING: frozenset({STOPPED, BACKOFF, FAILED}),  # stopped; stopped by a crash loop: wait it out, or give up
    BACKOFF: frozenset({STARTING, STOPPED}),  # retry; an operator's stop
    FAILED: frozenset({STARTING, STOPPED}),  # an operator's start; an operator's stop
}

# The event every move publishes: one topic, `watcher.NAME.state`, whose body says the new and previous state.
STATE_EVENT = "state"

# States in which the watcher has (or is getting) processes: respawns, incr and kill replacements happen only here.
RUNNING = frozenset({STARTING, ACTIVE})
# States a start settles in: a `start --waiting` (and a dependent waiting for this watcher) is answered in one of them.
SETTLED = frozenset({ACTIVE, FAILED, STOPPED})

# A process's states. `spawned` until its readiness check passes (at once with `ready = none`), `ready` then,
# `unhealthy` once its health check failed health_retries times in a row (it is being replaced), `stopping` once
# gcircus or the process itself (sd_notify STOPPING=1) began its stop.
SPAWNED, READY, UNHEALTHY, PROCESS_STOPPING = "spawned", "ready", "unhealthy", "stopping"
PROCESS_STATES = (SPAWNED, READY, UNHEALTHY, PROCESS_STOPPING)


class IllegalTransition(RuntimeError):
    """A watcher tried a move the table does not allow: a bug in gcircus, reported rather than hidden."""


def check_move(name: str, current: str, new: str, detaching: bool = False) -> None:
    """IllegalTransition unless watcher `name` may move from `current` to `new`."""
    if new == current or new in TRANSITIONS[current] or (detaching and new == STOPPED):
        return
    raise IllegalTransition(f"watcher {name!r} cannot move from {current} to {new}")
