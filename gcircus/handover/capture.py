"""What the old image writes down before it re-executes itself: the snapshot of every watcher and process.

Taken without yielding to the hub (nothing here blocks), right before exec: no exit can be reaped in between, so a
process the snapshot lists is either alive or a zombie the new image reaps (an exit already seen is written down).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

from gcircus import __version__
from gcircus.handover import snapshot as snapshot_module
from gcircus.handover import streams_bridge
from gcircus.states import SPAWNED

# The respawn policy's counters that carry over (its settings come from the configuration again).
POLICY_STATE = ("tries", "quick_exits", "spawn_failures", "failed_spawns", "retry_at", "endless", "exits", "pauses")


def take(arbiter, stream_fds: dict, request: dict | None, pidfile: dict | None) -> dict:
    """The snapshot of `arbiter`; `stream_fds` maps pid -> the description of its output (streams_bridge)."""
    return {
        "version": snapshot_module.VERSION, "gcircus_version": __version__, "config_path": arbiter.config_path,
        "argv": list(sys.argv), "taken_at": time.time(),
        "watchers": [watcher_state(w, stream_fds) for w in arbiter.watchers],
        "sockets": {name: sock.fileno() for name, sock in arbiter.sockets.items() if sock.fileno() != -1},
        "request": request, "pidfile": pidfile,
    }


def watcher_state(watcher, stream_fds: dict) -> dict:
    now = time.monotonic()
    retry = watcher._retry_timer
    policy = dataclasses.asdict(watcher.respawn_policy)
    return {
        "name": watcher.name, "state": watcher.status(), "reason": watcher.reason,
        "processes": [process_state(watcher, p, stream_fds.get(p.pid, {}), now)
                      for p in sorted(watcher.processes.values(), key=lambda p: p.wid)],
        "history": {str(wid): {"restarts": h.restarts, "last_exit": h.last_exit}
                    for wid, h in watcher._history.items()},
        "policy": {key: policy[key] for key in POLICY_STATE},
        "retry_in": max(0.0, retry.due - now) if retry is not None and hasattr(retry, "due") else None,
        # A start waiting for its depends_on (starting, nothing spawned): the new image waits again, not spawns.
        "waits_for_dependencies": watcher._dependency_wait is not None,
        # Its sd_notify socket: the children keep their NOTIFY_SOCKET, and what they send meanwhile is read after.
        "notify_socket": watcher.checks.notify_socket_state(),
    }


def process_state(watcher, process, streams: dict, now: float) -> dict:
    timer = watcher._expiry.get(process.pid)
    return {
        "pid": process.pid, "wid": process.wid, "started": process.started, "state": process.state,
        "ready_at": process.ready_at, "status_text": process.status_text, "check_detail": process.check_detail,
        "expires_in": max(0.0, timer.due - now) if timer is not None and hasattr(timer, "due") else None,
        "streams": streams, "exit_status": process.exit.status if process.exit is not None else None,
        # Still waiting to be ready: the same deadline, READY=1 already received, the fd:N pipe's read end.
        **watcher.checks.readiness_state(process), "ready_fd": _ready_fd(process),
    }


def _ready_fd(process) -> int | None:
    """The read end of a process's fd:N readiness pipe while it still waits for its newline, else None."""
    pipe = process.ready_pipe
    if pipe is None or process.state != SPAWNED or process.exit is not None:
        return None
    try:
        return pipe.fileno()
    except (OSError, ValueError):  # closed
        return None


def carried_fds(snapshot: dict) -> list[int]:
    """Every descriptor the snapshot names: they must survive exec (inheritable), the rest stays close-on-exec."""
    fds = list(snapshot["sockets"].values())
    for watcher in snapshot["watchers"]:
        if watcher.get("notify_socket"):
            fds.append(watcher["notify_socket"]["fd"])
        for process in watcher["processes"]:
            fds.extend(streams_bridge.descriptors(process["streams"]))
            if process.get("ready_fd") is not None:
                fds.append(process["ready_fd"])
    if snapshot.get("pidfile"):
        fds.append(snapshot["pidfile"]["fd"])
    return fds


def set_inheritable(fds: list[int], inheritable: bool) -> None:
    for fd in fds:
        os.set_inheritable(fd, inheritable)
