"""The watcher's own part of gcircusd re-executing itself (gcircus.handover): what it writes down of itself before
the exec, and how it takes that back in the new image instead of spawning.

Part of the watcher (it reads and restores the watcher's lifecycle state: lock, state, per-wid history, timers),
kept out of gcircus.watcher so that the watcher does not carry the hand-over; it is reached only through
Watcher.handover_state, adopt_handover and forget_handover. The snapshot's shape is checked by
gcircus.handover.snapshot before anything here reads it.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import gevent.event

from gcircus.process import Process
from gcircus.slot_history import SlotHistory
from gcircus.states import BACKOFF, READY, RUNNING, SPAWNED, STARTING

log = logging.getLogger(__name__)

# The respawn policy's counters that carry over (its settings come from the configuration again).
POLICY_STATE = ("tries", "quick_exits", "spawn_failures", "failed_spawns", "retry_at", "endless", "exits", "pauses")


def state(watcher, streams: dict[int, dict]) -> dict:
    """What the new image needs of `watcher`; `streams` maps pid -> the description of its output (already
    exported by the streams). Taken without yielding, right before the exec."""
    now = time.monotonic()
    policy = dataclasses.asdict(watcher.respawn_policy)
    return {
        "name": watcher.name, "state": watcher.status(), "reason": watcher.reason,
        "processes": [_process_state(watcher, p, streams.get(p.pid, {}), now)
                      for p in sorted(watcher.processes.values(), key=lambda p: p.wid)],
        "history": {str(wid): {"restarts": h.restarts, "last_exit": h.last_exit}
                    for wid, h in watcher._history.items()},
        "policy": {key: policy[key] for key in POLICY_STATE},
        "retry_in": _left(watcher._retry_timer, now),
        # A start waiting for its depends_on (starting, nothing spawned): the new image waits again, not spawns.
        "waits_for_dependencies": watcher._dependency_wait is not None,
        # Its sd_notify socket: the children keep their NOTIFY_SOCKET, and what they send meanwhile is read after.
        "notify_socket": watcher.checks.notify_socket_state(),
    }


def _process_state(watcher, process: Process, streams: dict, now: float) -> dict:
    return {
        "pid": process.pid, "wid": process.wid, "started": process.started, "state": process.state,
        "ready_at": process.ready_at, "status_text": process.status_text, "check_detail": process.check_detail,
        "expires_in": _left(watcher._expiry.get(process.pid), now),
        "streams": streams, "exit_status": process.exit.status if process.exit is not None else None,
        # Still waiting to be ready: the same deadline, READY=1 already received, the fd:N pipe's read end.
        **watcher.checks.readiness_state(process), "ready_fd": _ready_fd(process),
    }


def _left(timer, now: float) -> float | None:
    """Seconds left until a timer of the watcher fires (Watcher._later sets `due`), None without one."""
    return max(0.0, timer.due - now) if timer is not None and hasattr(timer, "due") else None


def _ready_fd(process: Process) -> int | None:
    """The read end of a process's fd:N readiness pipe while it still waits for its newline, else None."""
    pipe = process.ready_pipe
    if pipe is None or process.state != SPAWNED or process.exit is not None:
        return None
    try:
        return pipe.fileno()
    except (OSError, ValueError):  # closed
        return None


def rebuild(watcher, snapshot: dict) -> list[dict]:
    """Give `watcher` its processes and lifecycle back from `snapshot` (what state() wrote in the replaced image);
    return the process entries not adopted (not our children any more: the caller logs them, never signals)."""
    refused = []
    with watcher._lock:
        watcher._status, watcher.reason = snapshot["state"], snapshot["reason"]
        watcher.refuse_commands(None)
        if watcher._status in RUNNING:
            watcher.outputs.prepare()
        watcher.checks.adopt_notify_socket(snapshot.get("notify_socket"))  # before the spawn specs name it
        for entry in snapshot["processes"]:
            if not _adopt_process(watcher, entry):
                refused.append(entry)
        for key, value in snapshot["policy"].items():
            setattr(watcher.respawn_policy, key, [tuple(v) for v in value] if key == "pauses" else value)
        for wid, history in snapshot["history"].items():
            slot = watcher._history.setdefault(int(wid), SlotHistory())
            slot.restarts, slot.last_exit = history["restarts"], history["last_exit"]
        _rearm(watcher, snapshot)
        watcher._wake_state_waiters()
    log.info("watcher %r adopted: %s, %d processes", watcher.name, watcher._status, len(watcher.processes))
    return refused


def _rearm(watcher, snapshot: dict) -> None:
    """What the watcher was waiting for goes on: its dependencies, its back-off's retry, a respawn."""
    if watcher._status == STARTING and snapshot.get("waits_for_dependencies") is True:  # absent: an older image
        watcher._dependency_wait = watcher._greenlet(watcher._wait_for_dependencies, watcher._generation)
    elif watcher._status == BACKOFF and snapshot["retry_in"] is not None:
        watcher._retry_timer = watcher._later(snapshot["retry_in"], watcher._retry_after_backoff, watcher._generation)
    elif watcher._status in RUNNING and len(watcher.processes) < watcher.numprocesses:
        watcher._schedule_fill()


def _adopt_process(watcher, entry: dict) -> bool:
    """One process of the snapshot, supervised again; False for a pid that is not our child (left alone)."""
    pid, wid = entry["pid"], entry["wid"]
    spec = watcher._spawn_spec()
    if entry["exit_status"] is not None:  # reaped by the old image, not handled yet: handled here
        process = Process.adopt_exited(watcher.name, wid, spec, pid, entry["started"], entry["exit_status"],
                                       watcher=watcher, on_exit=watcher._on_exit)
    else:
        try:
            process = Process.adopt(watcher.name, wid, spec, pid, entry["started"], watcher=watcher,
                                    on_exit=watcher._on_exit, ready_fd=entry.get("ready_fd"))
        except ChildProcessError:
            return False
    process.state = entry["state"] if entry["state"] else SPAWNED
    process.ready_at, process.status_text, process.check_detail = (entry["ready_at"], entry["status_text"],
                                                                    entry["check_detail"])
    watcher.processes[pid] = process
    watcher._handled[pid] = gevent.event.Event()
    if entry["streams"]:
        watcher.outputs.adopt(process, entry["streams"])
    if process.exit is not None:
        watcher._on_exit(process)
        return True
    watcher.checks.adopt(process, process.spec.env or {}, ready=process.state == READY, carried=entry)
    if entry["expires_in"] is not None:
        watcher._expiry[pid] = watcher._later(entry["expires_in"], watcher._expire, process)
    return True


def forget(watcher) -> None:
    """Undo what a failed rebuild adopted already (child watchers disarmed, checks ended), to adopt it again."""
    for process in watcher.processes.values():
        process.disown()
        watcher.checks.forget(process)
    watcher.processes.clear()
    watcher._exits.clear()
    watcher._handled.clear()
