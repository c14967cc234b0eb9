"""What the Linux kernel offers a supervisor beyond the stdlib: prctl flags, the /proc process tree and stat line,
pidfd waits.

Kept in one module so the rest of gcircus reads as plain Python, and so a non-Linux port has exactly one place to
change. Processes are read from /proc directly: psutil scans all of /proc to find children, too slow for 1000 stops
at once, and parses more of each file than a supervisor needs each second.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
from collections.abc import Callable, Iterable
from typing import NamedTuple

import gevent
from gevent.socket import wait_read

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_prctl = ctypes.CDLL(None, use_errno=True).prctl  # libc is already loaded; find_library would spawn ldconfig
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]  # returns an int


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


class Stat(NamedTuple):
    """The fields of /proc/PID/stat that gcircus reads (man 5 proc numbers them 3, 14, 15, 19 and 22)."""

    state: str  # "R", "S", "D"...; "Z" for a zombie awaiting its reaping, "X" while it is being reaped
    utime: int  # CPU time in user mode, in clock ticks (SC_CLK_TCK)
    stime: int  # CPU time in kernel mode, in clock ticks
    nice: int
    start_time: int  # clock ticks after boot: with the pid, it names one process, as pids are reused


def read_proc(pid: int, name: str) -> bytes:
    """/proc/PID/NAME; FileNotFoundError or ProcessLookupError once `pid` is gone (other OSErrors as they come).

    One open and one read, no buffered file object: the stats channel reads files of every process every second.
    """
    fd = os.open(f"/proc/{pid}/{name}", os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def read_stat(pid: int) -> Stat:
    """The stat line of `pid`; raises as `read_proc` does."""
    data = read_proc(pid, "stat")
    # The command name (field 2) may contain spaces and parentheses: the other fields start after its LAST ")".
    # Split only as far as the start time: the 30 fields after it would cost a tenth of this function.
    fields = data[data.rfind(b")") + 2:].split(None, 20)
    if len(fields) < 20:
        raise ProcessLookupError(errno.ESRCH, f"no stat line for pid {pid}")
    # tuple.__new__ skips the NamedTuple's Python-level __new__, a fifth of the cost of this function.
    return tuple.__new__(Stat, (chr(fields[0][0]), int(fields[11]), int(fields[12]), int(fields[16]), int(fields[19])))


def is_running(pid: int, start_time: int | None = None) -> bool:
    """False once `pid` has terminated, whoever reaps it: gone, or a zombie (psutil's is_running counts zombies).

    With `start_time` (Stat.start_time, remembered earlier), also False once the pid names another process.
    """
    try:
        stat = read_stat(pid)
    except OSError:
        return False
    return stat.state not in "ZX" and start_time in (None, stat.start_time)


def children(pid: int) -> list[int]:
    """Direct children of `pid` as listed by the kernel (one small read per thread, no scan of /proc).

    Plain descriptors, not file objects: every process stopped is walked first, and a buffered file costs twice
    the time of the three system calls (10 -> 5.6 us per process).
    """
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:  # a thread that exits meanwhile has no children file any more
        with contextlib.suppress(OSError):
            found.extend(map(int, _read_all(f"/proc/{pid}/task/{tid}/children").split()))
    return found


def _read_all(path: str) -> bytes:
    """The whole content of a small /proc file (OSError if it cannot be opened or read)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, parents before children.

    Walks /proc/PID/task/TID/children, which costs a few reads per process in the tree rather than a scan of every
    process on the machine.
    """
    result: list[int] = []
    todo = [pid]
    seen = {pid}
    while todo:
        for child in children(todo.pop()):
            if child not in seen:
                seen.add(child)
                result.append(child)
                todo.append(child)
    return result


def kill(pid: int, signum: int) -> bool:
    """Send `signum` to `pid`; False (and no error) if it is already gone."""
    try:
        os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False


def wait_exited(pid: int) -> None:
    """Block this greenlet until `pid` has terminated, waiting on a pidfd (readable once the process exits).

    An I/O wait on the hub, not a poll, and it works for processes that are not our children (waitpid does not).
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if is_running(pid):
            wait_read(fd)
    finally:
        os.close(fd)


class Tree:
    """Processes remembered by pid and start time, to signal and wait for them after their parent died.

    Once a parent is gone its children cannot be found by walking from it, and their pids may be reused: the start
    time tells a remembered process from a stranger that got its pid.
    """

    def __init__(self, pids: Iterable[int] = ()):
        self.members: dict[int, int] = {}  # pid -> start time
        for pid in pids:
            self.add(pid)

    def add(self, pid: int) -> None:
        """Remember `pid`, unless it is already gone."""
        with contextlib.suppress(OSError):
            self.members.setdefault(pid, read_stat(pid).start_time)

    def add_tree(self, pid: int) -> None:
        """Remember `pid` and every descendant of it."""
        for member in [pid, *descendants(pid)]:
            self.add(member)

    def add_group_members(self, pgid: int) -> None:
        """Remember members of process group `pgid` (and their trees) that were not seen as descendants.

        They started after the walk, or were orphaned when the group's leader exited and re-parented to us (we are a
        child subreaper): we look among our own children.
        """
        for child in children(os.getpid()):
            with contextlib.suppress(OSError):  # a child that exits meanwhile
                if child not in self.members and os.getpgid(child) == pgid:
                    self.add_tree(child)

    def alive(self) -> list[int]:
        """The members still running; those that exited are forgotten."""
        self.members = {pid: started for pid, started in self.members.items() if is_running(pid, started)}
        return list(self.members)

    def stop(self, stop_signal: int, grace: float, signal_all: Callable[[int, list[int]], None] | None = None) -> None:
        """Send the live members `stop_signal`, SIGKILL those left after `grace` seconds; block until all are gone.

        `signal_all(signum, pids)` delivers each round of signals (default: a kill of each pid). The waits are on
        pidfds: an I/O wait, not a poll.
        """
        for signum, timeout in ((stop_signal, grace), (signal.SIGKILL, None)):
            pids = self.alive()
            if not pids:
                return
            if signal_all is None:
                for pid in pids:
                    kill(pid, signum)
            else:
                signal_all(signum, pids)
            with gevent.Timeout(timeout, False):
                for pid in self.alive():
                    wait_exited(pid)
