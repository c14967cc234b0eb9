"""Process information as Circus's `stats` and `dstats` report it, read cheaply enough for thousands of processes.

One process costs a handful of /proc reads: psutil's `oneshot()` shares the parsed stat and status files between
the fields, the memory percentage is computed from the RSS already read, and user names are cached per uid.
psutil.Process objects are kept per process (cpu_percent with no interval compares with the previous sample of the
same object), so successive `stats` calls report the CPU use between them, as Circus does. Functions that read many
processes yield to the hub every few milliseconds: a `stats` of a thousand processes (~0.12 s) never stalls
supervision for long.

Fields (all may be "N/A" when psutil is denied access): mem_info1/mem_info2 (RSS/VMS in human form such as "31.24M"),
cpu (percent), mem (percent of physical memory, 3 decimals), ctime (user+system CPU time as "M:SS.cc"), pid,
username, nice ("Zombie" for a zombie child), create_time, age, cmdline (basename of argv[0]), children.
"""
from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shlex
import time
from collections.abc import Iterable
from typing import Any

import gevent
import psutil

NA = "N/A"
NO_SUCH_PROCESS = "No such process (stopped?)"
ZOMBIE = "Zombie"
# Seconds of work between two yields to the hub in every loop over many processes (/proc reads, samples, metrics):
# the longest a request waits behind such a loop, plus what the machine's load adds.
YIELD_AFTER = 0.003

_SIZE_SYMBOLS = ("K", "M", "G", "T", "P", "E", "Z", "Y")
_tracked: dict[int, psutil.Process] = {}  # children of watched processes, and gcircusd itself, by pid
_tracked_after_sweep = 0


def human_size(n: int) -> str:
    """Bytes in Circus's human form: "100B", "1.50K", "31.24M" (powers of 1024, two decimals)."""
    for power in range(len(_SIZE_SYMBOLS), 0, -1):
        unit = 1 << (10 * power)
        if n >= unit:
            return f"{round(n / unit, 2):.2f}{_SIZE_SYMBOLS[power - 1]}"
    return f"{n}B"


def cpu_time(seconds: float) -> str:
    """CPU seconds as "M:SS.cc": total minutes (never wrapped at an hour), seconds, hundredths."""
    hundredths = int(seconds * 100 + 1e-6) if seconds > 0 else 0  # truncated, like ps (1e-6: 0.29 * 100 < 29)
    minutes, rest = divmod(hundredths, 6000)
    return f"{minutes}:{rest // 100:02d}.{rest % 100:02d}"


@functools.cache
def username(uid: int) -> str:
    """The login name of `uid` (the number as text when it has none); cached, as NSS lookups can be slow."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@functools.cache
def memory_total() -> int:
    """The machine's physical memory in bytes, read once (the base of every process's `mem` percentage)."""
    return psutil.virtual_memory().total


def guarded(read, default: Any = NA) -> Any:
    """One field: `default` when access is denied (a vanished process still raises NoSuchProcess)."""
    try:
        return read()
    except psutil.AccessDenied:
        return default


def program(proc: psutil.Process) -> str:
    """Circus's `cmdline` field: the basename of argv[0] ("N/A" when unreadable, as for a zombie)."""
    try:
        argv = proc.cmdline()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return NA
    if not argv:
        return NA
    try:
        first = shlex.split(argv[0])[0]  # a process that rewrote its title may have spaces in argv[0]
    except (ValueError, IndexError):
        first = argv[0]
    return os.path.basename(first)


def get_info(proc: psutil.Process, interval: float = 0) -> dict:
    """Circus's info dict for one psutil process (children left empty); raises psutil.NoSuchProcess if it is gone.

    cpu is the use since the previous call on the same `proc` object (0.0 on the first call), or with `interval` > 0
    the use over that many seconds (the calling greenlet sleeps, the hub does not).
    """
    if interval > 0:
        guarded(lambda: proc.cpu_percent(None))
        gevent.sleep(interval)
    with proc.oneshot():
        zombie = guarded(proc.status, None) == psutil.STATUS_ZOMBIE
        memory = guarded(proc.memory_info, None)
        times = guarded(proc.cpu_times, None)
        return info_dict(pid=proc.pid, rss=memory and memory.rss, vms=memory and memory.vms,
                         cpu=guarded(lambda: proc.cpu_percent(None)), cpu_seconds=times and times.user + times.system,
                         user=guarded(lambda: username(proc.uids().real)),
                         nice=ZOMBIE if zombie else guarded(proc.nice), created=guarded(proc.create_time),
                         cmdline=program(proc))


def info_dict(pid: int, rss: int | None, vms: int | None, cpu: Any, cpu_seconds: float | None, user: Any, nice: Any,
              created: Any, cmdline: Any) -> dict:
    """Circus's info dict (children left empty) from the values read; None or "N/A" for what could not be read.

    The one place the fields are built, for `stats` (psutil, get_info) and the stats channel (/proc, the sampler).
    """
    return {
        "mem_info1": NA if rss is None else human_size(rss),
        "mem_info2": NA if vms is None else human_size(vms),
        "cpu": cpu,
        "mem": NA if rss is None else round(rss * 100.0 / memory_total(), 3),
        "ctime": NA if cpu_seconds is None else cpu_time(cpu_seconds),
        "pid": pid,
        "username": user,
        "nice": nice,
        "create_time": created,
        "age": time.time() - created if isinstance(created, float) else NA,
        "cmdline": cmdline,
        "children": [],
    }


def tracked(pid: int) -> psutil.Process:
    """The cached psutil object for `pid`, replaced when the pid now belongs to another process."""
    global _tracked, _tracked_after_sweep
    proc = _tracked.get(pid)
    if proc is None or not proc.is_running():
        proc = _tracked[pid] = psutil.Process(pid)
        if len(_tracked) > 2 * _tracked_after_sweep + 64:  # grown twice over since the last sweep
            _tracked = {old_pid: old for old_pid, old in _tracked.items() if old.is_running()}
            _tracked_after_sweep = len(_tracked)
    return proc


def children_info(pids: Iterable[int]) -> list[dict]:
    """Info of each direct child (no grandchildren); children that vanish meanwhile are left out."""
    result = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            result.append(get_info(tracked(pid)))
    return result


def process_info(process) -> dict | str:
    """Circus's info for a supervised process (a gcircus Process), or "No such process (stopped?)" if it is gone.

    Adds to get_info: age (seconds since gcircus spawned it), started (spawn epoch), wid, and its direct children.
    """
    proc = process.psutil_process()  # None once the process is gone
    if proc is None:
        return NO_SUCH_PROCESS
    try:
        info = get_info(proc)
        if info["nice"] == ZOMBIE:  # get_info marks zombies there: the process exited and awaits its reaping
            return NO_SUCH_PROCESS
    except psutil.NoSuchProcess:
        return NO_SUCH_PROCESS
    info.update(age=process.age(), started=process.started, children=children_info(process.children()),
                wid=process.wid, cmdline=process.program_shown(info["cmdline"]))
    return info


def processes_info(processes: Iterable) -> dict[int, dict | str]:
    """{pid: process_info} for many supervised processes, yielding to the hub after every YIELD_AFTER seconds.

    A timed sleep, not sleep(0): only a timer makes the hub poll for I/O and run due timers before resuming us.
    """
    result: dict[int, dict | str] = {}
    since = time.monotonic()
    for process in list(processes):
        result[process.pid] = process_info(process)
        if time.monotonic() - since > YIELD_AFTER:
            gevent.sleep(0.0001)
            since = time.monotonic()
    return result


def daemon_info(interval: float = 0.01) -> dict:
    """Info of the calling process itself (gcircusd), cpu measured over `interval` seconds; children are [].

    Circus's dstats also measures over 0.01 s, but blocks its whole loop doing so; here only the caller sleeps.
    """
    return get_info(tracked(os.getpid()), interval)
