"""A watcher's states are one table (gcircus.states): every move a real watcher makes is one the table allows, and
a move it does not allow is refused loudly instead of leaving the watcher in a state nobody expects."""
from __future__ import annotations

import pytest

from gcircus import states
from gcircus.states import ACTIVE, BACKOFF, FAILED, STARTING, STOPPED, STOPPING, IllegalTransition, check_move
from gcircus.watcher import Watcher
from tests.support.waiting import wait_for


class MoveRecorder:
    """Every (from, to) move a watcher makes, read through its one transition method."""

    def __init__(self, watcher: Watcher):
        self.moves: list[tuple[str, str]] = []
        original = watcher._move_to

        def move_to(state: str, detaching: bool = False, reason: str = "") -> None:
            self.moves.append((watcher.status(), state))
            original(state, detaching, reason)
        watcher._move_to = move_to


def test_the_table_has_circus_states_and_gcircus_two_and_only_moves_between_them():
    assert set(states.TRANSITIONS) == {STOPPED, STARTING, ACTIVE, STOPPING, BACKOFF, FAILED}
    assert all(targets <= set(states.TRANSITIONS) for targets in states.TRANSITIONS.values())


def test_a_move_the_table_does_not_allow_is_refused():
    with pytest.raises(IllegalTransition, match="cannot move from stopped to active"):
        check_move("w", STOPPED, ACTIVE)
    with pytest.raises(IllegalTransition):
        check_move("w", STOPPING, STARTING)
    check_move("w", ACTIVE, ACTIVE)  # staying is no move
    check_move("w", STARTING, STOPPED, detaching=True)  # rm --nostop gives up the processes from any state


def test_start_stop_restart_and_detach_make_only_allowed_moves():
    watcher = Watcher("w", "sleep 1000", numprocesses=2, graceful_timeout=5)
    recorder = MoveRecorder(watcher)
    try:
        watcher.start()
        assert watcher.status() == ACTIVE
        watcher.restart()
        watcher.stop()
        assert watcher.status() == STOPPED
        watcher.start()
        pids = watcher.pids
    finally:
        watcher.stop()
    assert recorder.moves == [(STOPPED, STARTING), (STARTING, ACTIVE), (ACTIVE, STOPPING), (STOPPING, STOPPED),
                              (STOPPED, STARTING), (STARTING, ACTIVE), (ACTIVE, STOPPING), (STOPPING, STOPPED),
                              (STOPPED, STARTING), (STARTING, ACTIVE), (ACTIVE, STOPPING), (STOPPING, STOPPED)]
    assert len(pids) == 2


def test_a_start_that_cannot_spawn_moves_from_starting_to_stopping_then_failed():
    watcher = Watcher("w", "/nonexistent/command", max_retry=0)
    recorder = MoveRecorder(watcher)
    watcher.start()
    wait_for(lambda: watcher.status() == FAILED, message="the watcher failed")
    assert recorder.moves == [(STOPPED, STARTING), (STARTING, STOPPING), (STOPPING, FAILED)]
