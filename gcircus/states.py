"""A watcher's states and the moves between them, declared once: the watcher changes state only through
`Watcher._move_to`, which checks the move against this table.

The four states are Circus's, with Circus's meaning, so `status` replies keep working for Circus clients. Later
states (a back-off being waited out, a watcher that gave up, per-process readiness) are added here, in this table.
"""
from __future__ import annotations

STOPPED, STARTING, ACTIVE, STOPPING = "stopped", "starting", "active", "stopping"

# Each state, and the states a watcher may move to from it. Any state may also move to stopped when the watcher gives
# up its processes without stopping them (`rm --nostop`), and staying in a state is no move.
TRANSITIONS: dict[str, frozenset[str]] = {
    STOPPED: frozenset({STARTING, STOPPING}),  # start; stop what an earlier life left behind
    STARTING: frozenset({ACTIVE, STOPPING}),  # every process spawned; spawning failed or a hook refused
    ACTIVE: frozenset({STOPPING, STOPPED}),  # stop; an on_demand watcher whose processes all exited waits again
    STOPPING: frozenset({STOPPED}),
}


class IllegalTransition(RuntimeError):
    """A watcher tried a move the table does not allow: a bug in gcircus, reported rather than hidden."""


def check_move(name: str, current: str, new: str, detaching: bool = False) -> None:
    """IllegalTransition unless watcher `name` may move from `current` to `new`."""
    if new == current or new in TRANSITIONS[current] or (detaching and new == STOPPED):
        return
    raise IllegalTransition(f"watcher {name!r} cannot move from {current} to {new}")
