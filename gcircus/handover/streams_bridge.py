"""The watchers' output across a re-exec, through gcircus.streams' own hand-over (WatcherOutputs.export_all/adopt):
every process's readers stop at a clean point, what the sinks did not take (and a line still without its newline)
goes into the snapshot with the pipe's descriptor, and the new image reads on from there: every byte once, in order.
"""
from __future__ import annotations

import os


def detach_all(arbiter) -> dict[int, dict]:
    """Stop reading every process's output: pid -> its description for `reattach` (one bounded wait in all)."""
    exported: dict[int, dict] = {}
    for watcher in arbiter.watchers:
        exported.update(watcher.outputs.export_all(list(watcher.processes.values())))
    return exported


def descriptors(exported: dict) -> list[int]:
    """The pipe descriptors a description names (none for a pipe already at end of file, or no pipes at all)."""
    return [stream["fd"] for stream in (exported or {}).get("streams", {}).values() if stream.get("fd") is not None]


def reattach(watcher, process, exported: dict) -> None:
    """Read `process`'s output on from where `detach_all` stopped (the exec failed, or this is the new image)."""
    if exported:
        watcher.outputs.adopt(process, exported)


def resume_all(arbiter, kept: dict[int, dict]) -> None:
    """Undo detach_all in the old image (the exec failed)."""
    for watcher in arbiter.watchers:
        for pid, process in list(watcher.processes.items()):
            if pid in kept:
                reattach(watcher, process, kept.pop(pid))
    for exported in kept.values():  # processes gone meanwhile: nothing reads their pipes any more
        close(exported)


def close(exported: dict) -> None:
    for fd in descriptors(exported):
        close_fd(fd)


def close_fd(fd: int) -> None:
    """Close a carried descriptor nothing will read (already closed: nothing to do)."""
    try:
        os.close(fd)
    except OSError:
        pass
