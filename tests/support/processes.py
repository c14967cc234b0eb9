"""Facts about live processes, read from /proc: alive, exec'd, their signal dispositions, the test's descendants.

The only module of the tests that reads gcircus's process-tree helpers, so their names change in one place.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from gcircus import linux

PYTHON = sys.executable
# A Python child that ignores SIGTERM (check ignores_term(pid) before relying on it: the handler takes a moment).
IGNORE_TERM = (f"{PYTHON} -c \"import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               f"time.sleep(1000)\"")


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    return linux.is_running(pid)


def children(pid: int) -> list[int]:
    """The live direct children of `pid`."""
    return [child for child in linux.children(pid) if alive(child)]


def live_descendants() -> list[int]:
    """Every live process below the test process (a child subreaper: daemonized ones included)."""
    return [pid for pid in linux.descendants(os.getpid()) if alive(pid)]


def kill(pids) -> None:
    """SIGKILL each of `pids` that still exists."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def running_own_program(pid: int) -> bool:
    """True once `pid` has exec'd its own program.

    Between fork and exec a child is a copy of its parent, with the parent's argv and signal handlers: its
    /proc masks then describe the parent (gcircusd's SIGTERM and SIGINT handlers), not the command's traps.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            ppid = next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
        return _cmdline(pid) != _cmdline(ppid)
    except (OSError, StopIteration):
        return False


def handles(pid: int, signum: int) -> bool:
    """True once `pid` (the command itself, past any launcher exec) catches or ignores `signum`."""
    if not running_own_program(pid):  # a child not exec'd yet shows gcircusd's own handlers
        return False
    bit = 1 << (signum - 1)
    try:
        with open(f"/proc/{pid}/status") as f:
            masks = {k: int(v, 16) for k, v in (line.split(":") for line in f) if k in ("SigCgt", "SigIgn")}
    except OSError:
        return False
    return bool((masks.get("SigCgt", 0) | masks.get("SigIgn", 0)) & bit)


def ignores_term(pid: int) -> bool:
    """True once the process has set SIGTERM to ignored (the IGNORE_TERM child is ready)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    except (OSError, StopIteration):
        return False
    return bool(mask & (1 << (15 - 1)))


def spawned(record) -> list[str]:
    """The pids a watcher command recorded, one per spawn (`echo $$ >> record`)."""
    return record.read_text().split() if record.exists() else []


PF_EXITING = 0x4  # /proc/PID/stat flags: the process is exiting (acting on a fatal signal, say)


def signals_settled(pid: int) -> bool:
    """True when nothing sent to `pid` so far is still to take effect: no signal queued, not exiting (or gone).

    The kernel queues a signal at once when it is sent (a parent-death signal while the parent exits, before it
    can be reaped): a test reads this instead of waiting a while for a signal that might come.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            masks = {k: int(v, 16) for k, v in (line.split(":") for line in f) if k in ("SigPnd", "ShdPnd")}
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rpartition(")")[2].split()
    except (OSError, ValueError):
        return True
    return stat[0] == "Z" or not (masks.get("SigPnd", 0) or masks.get("ShdPnd", 0) or int(stat[6]) & PF_EXITING)


def terminate_child(proc, timeout: float = 30) -> None:
    """SIGTERM a child we started (a Popen), then SIGKILL if it is still there after `timeout`; reap it either way."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
