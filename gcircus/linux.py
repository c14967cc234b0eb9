"""Linux process-control primitives that the stdlib does not expose: prctl flags and the /proc process tree.

Kept in one small module so the rest of gcircus reads as plain Python, and so a non-Linux port has exactly one
place to change.
"""
from __future__ import annotations

import ctypes
import os

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)  # libc is already loaded; find_library would spawn ldconfig
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def prctl(option: int, arg: int) -> None:
    """Call prctl(2) with one argument; raise OSError on failure."""
    if _prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_child_subreaper(enabled: bool = True) -> None:
    """Make orphaned descendants re-parent to this process, so a service's escaped grandchildren stay ours to stop."""
    prctl(PR_SET_CHILD_SUBREAPER, 1 if enabled else 0)


def set_parent_death_signal(signum: int) -> None:
    """Ask the kernel to send `signum` to this process when its parent dies (used in children, before exec)."""
    prctl(PR_SET_PDEATHSIG, signum)


def _read_children(pid: int) -> list[int]:
    """Direct children of `pid` as listed by the kernel (one small read per thread, no scan of /proc)."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, parents before children.

    Walks /proc/PID/task/TID/children, which costs a few reads per process in the tree rather than a scan of every
    process on the machine (psutil's `children(recursive=True)` reads all of /proc, too slow for 1000 stops at once).
    """
    result: list[int] = []
    todo = [pid]
    seen = {pid}
    while todo:
        for child in _read_children(todo.pop()):
            if child not in seen:
                seen.add(child)
                result.append(child)
                todo.append(child)
    return result


def start_time(pid: int) -> int | None:
    """The kernel start time of `pid` in clock ticks (field 22 of /proc/PID/stat), to tell a pid from its reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing parenthesis.
    fields = data[data.rfind(b")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None
