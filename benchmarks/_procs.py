"""Process helpers for the benchmark runner: find workload children, wait for them, clean up.

Everything here works on pids through psutil, never on process names, so the runner can only
ever signal processes it started itself (the daemons) or processes that carry this run's unique
workload marker on their command line.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psutil


class DaemonDied(RuntimeError):
    """The supervisor daemon exited while we were waiting on it."""


class Timeout(RuntimeError):
    """A wait exceeded its deadline; the cell is reported as 'timeout'."""


class WorkloadScanner:
    """Finds the workload children below one daemon.

    A child is workload when its argv is exactly ``[<...>/sleep, marker]``. The marker is unique to
    this run, so leftovers of an earlier, crashed run are never counted. A positive answer is cached
    per pid (argv cannot change back after exec) so that polling 1000 children stays cheap;
    negative answers are not cached because a freshly forked child still shows the daemon's argv
    until it execs.
    """

    def __init__(self, daemon_pid: int, marker: str):
        self.daemon_pid = daemon_pid
        self.marker = marker
        self._known: set[int] = set()
        self._dead: set[int] = set()

    def forget(self, pid: int) -> None:
        """Never count ``pid`` again: we killed it, but it stays a zombie until the daemon reaps it."""
        self._known.discard(pid)
        self._dead.add(pid)

    def is_workload(self, cmdline: list[str]) -> bool:
        return len(cmdline) == 2 and cmdline[0].endswith("sleep") and cmdline[1] == self.marker

    def descendants(self) -> list[int]:
        """All descendant pids of the daemon (psutil does one /proc scan per call)."""
        try:
            return [p.pid for p in psutil.Process(self.daemon_pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def scan(self) -> tuple[set[int], set[int]]:
        """Return (workload pids, other descendant pids) currently below the daemon."""
        work, other = set(), set()
        for pid in self.descendants():
            if pid in self._dead:
                continue
            if pid in self._known:
                work.add(pid)
                continue
            try:
                cmd = psutil.Process(pid).cmdline()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            if self.is_workload(cmd):
                self._known.add(pid)
                work.add(pid)
            else:
                other.add(pid)
        self._known &= work  # forget pids that are gone
        return work, other


def wait_until(cond: Callable[[], bool], daemon: psutil.Popen, timeout: float, interval: float) -> float:
    """Poll ``cond`` until true; return the elapsed seconds.

    Raises DaemonDied if the daemon exits first and Timeout after ``timeout`` seconds, so a broken
    supervisor costs at most ``timeout`` and never hangs the run.
    """
    t0 = time.perf_counter()
    while True:
        if cond():
            return time.perf_counter() - t0
        if daemon.poll() is not None:
            raise DaemonDied(f"daemon exited with code {daemon.returncode}")
        if time.perf_counter() - t0 > timeout:
            raise Timeout(f"not reached in {timeout:.0f}s")
        time.sleep(interval)


def kill_pids(pids: set[int] | list[int], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to each pid, ignoring the ones already gone."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def marked_processes(marker: str) -> list[int]:
    """Every process on the machine whose argv carries this run's marker (orphans included)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if len(cmd) == 2 and cmd[1] == marker:
            out.append(p.pid)
    return out


def stop_daemon(daemon: psutil.Popen, scanner: WorkloadScanner, timeout: float) -> float | None:
    """SIGTERM the daemon and wait for it and all its workload children to go.

    Returns the seconds it took, or None when it did not finish in ``timeout`` (then everything is
    SIGKILLed by pid). Children are snapshotted before the signal because once the daemon is gone
    they are re-parented and can no longer be found through it.
    """
    try:
        known = set(scanner.descendants())
    except psutil.Error:
        known = set()
    if daemon.poll() is not None:
        kill_pids(known | set(marked_processes(scanner.marker)))
        return None
    t0 = time.perf_counter()
    daemon.send_signal(signal.SIGTERM)
    elapsed = None
    while time.perf_counter() - t0 < timeout:
        alive = [p for p in known if psutil.pid_exists(p) and _not_zombie(p)]
        if daemon.poll() is not None and not alive:
            elapsed = time.perf_counter() - t0
            break
        time.sleep(0.05)
    if daemon.poll() is None:
        daemon.kill()
        try:
            daemon.wait(5)
        except psutil.TimeoutExpired:
            pass
    kill_pids(known | set(marked_processes(scanner.marker)))
    return elapsed


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
