"""What the old image writes down before it re-executes itself: the snapshot of every watcher and process.

Taken without yielding to the hub (nothing here blocks), right before exec: no exit can be reaped in between, so a
process the snapshot lists is either alive or a zombie the new image reaps (an exit already seen is written down).
"""
from __future__ import annotations

import os
import sys
import time

from gcircus import __version__
from gcircus.handover import snapshot as snapshot_module
from gcircus.handover import streams_bridge


def take(arbiter, stream_fds: dict, request: dict | None, pidfile: dict | None) -> dict:
    """The snapshot of `arbiter`; `stream_fds` maps pid -> the description of its output (streams_bridge)."""
    return {
        "version": snapshot_module.VERSION, "gcircus_version": __version__, "config_path": arbiter.config_path,
        "argv": list(sys.argv), "taken_at": time.time(),
        "watchers": [w.handover_state(stream_fds) for w in arbiter.watchers],
        "sockets": {name: sock.fileno() for name, sock in arbiter.sockets.items() if sock.fileno() != -1},
        "request": request, "pidfile": pidfile,
    }


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
