"""list, status, listsockets: what runs and what is bound. These never wait behind a command in progress."""
from __future__ import annotations

from gcircus.control.executors.base import executes, get_watcher


@executes("list")
def list_watchers(arbiter, props):
    if props["name"]:
        return {"pids": get_watcher(arbiter, props["name"]).get_active_pids()}
    return {"watchers": sorted(w.name.lower() for w in arbiter.watchers)}


@executes("status")
def status(arbiter, props):
    if props["name"]:
        return {"status": get_watcher(arbiter, props["name"]).status()}
    return {"statuses": arbiter.statuses()}


@executes("listsockets")
def list_sockets(arbiter, props):
    sockets = []
    for name, sock in arbiter.sockets.items():
        fd = sock.fileno()
        if fd == -1:  # closed (the arbiter is not running)
            continue
        entry = {"fd": fd, "name": name, "backlog": sock.backlog}
        if sock.is_unix:
            entry["path"] = sock.path
        else:
            entry["host"] = sock.host
            entry["port"] = sock.port
        sockets.append(entry)
    return {"sockets": sorted(sockets, key=lambda s: s["fd"])}
