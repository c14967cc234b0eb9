"""A program run as PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`), seen from the host.

`unshare --fork` runs the program as the namespace's first process (its init: PID 1 inside, an ordinary pid on the
host). Every process of the namespace is also a process of the host, so the host's /proc shows them all: a process
belongs to the namespace when its /proc/PID/ns/pid link names the init's namespace. When the init exits, the kernel
SIGKILLs whatever is left in the namespace: an empty namespace after the exit proves nothing, so the tests read
how each process ended (a SIGTERM trap can record it, the kernel's SIGKILL cannot be trapped).
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess

from gevent import subprocess as gsubprocess

from gcircus import linux
from tests.support.processes import PYTHON
from tests.support.waiting import wait_for

GCIRCUSD = [PYTHON, "-m", "gcircus.cli.gcircusd"]
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    """Why a PID namespace cannot be made here (no unshare, no privilege), or None when it can."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    try:
        probe = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --pid --fork --mount-proc cannot run: {exc}"
    if probe.returncode != 0:
        return f"unshare --pid --fork --mount-proc failed (root with CAP_SYS_ADMIN is needed): {probe.stderr.strip()}"
    return None


def namespace_of(pid: int) -> str | None:
    """The PID namespace `pid` is in (the ns/pid link, e.g. `pid:[4026532288]`), None once it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def pid_inside(pid: int) -> int | None:
    """What `pid` (a host pid) is called in its own namespace: the last NSpid entry of its status."""
    try:
        with open(f"/proc/{pid}/status") as f:
            line = next(line for line in f if line.startswith("NSpid:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[-1])


class PidNamespace:
    """`argv` run as PID 1 of a new PID namespace, its output in `log_path`; close() kills all that is left."""

    def __init__(self, argv: list[str], log_path):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        # Its own session: the unshare process and its group are killed together at close().
        self.unshare = gsubprocess.Popen([*UNSHARE, *argv], stdout=self._log, stderr=gsubprocess.STDOUT,
                                         start_new_session=True)
        self.init = wait_for(self._find_init, 30, message="the namespace's init process")
        self.namespace = wait_for(lambda: self._namespace_if_new(), 30, message="the new PID namespace")

    def _find_init(self) -> int | None:
        if self.unshare.poll() is not None:
            raise AssertionError(f"unshare exited with {self.unshare.returncode}:\n{self.output()}")
        found = linux.children(self.unshare.pid)
        return found[0] if found else None

    def _namespace_if_new(self) -> str | None:
        """The init's namespace once it differs from the unshare process's (it is entered at fork)."""
        inner, outer = namespace_of(self.init), namespace_of(self.unshare.pid)
        return inner if inner is not None and inner != outer else None

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def members(self) -> dict[int, str]:
        """Every process of the namespace, by host pid, with its state letter ("Z" for a zombie)."""
        found = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and namespace_of(int(entry)) == self.namespace:
                try:
                    found[int(entry)] = linux.read_stat(int(entry)).state
                except OSError:
                    pass  # gone meanwhile
        return found

    def zombies(self) -> list[int]:
        return [pid for pid, state in self.members().items() if state == "Z"]

    def signal_init(self, signum: int) -> None:
        os.kill(self.init, signum)

    def wait(self, timeout: float = 60) -> int:
        """The init's exit code (unshare --fork exits with it)."""
        return self.unshare.wait(timeout=timeout)

    def close(self) -> None:
        """SIGKILL the init (the kernel then kills the whole namespace) and the unshare process group; reap unshare."""
        if self.unshare.poll() is None:
            linux.kill(self.init, signal.SIGKILL)
            try:
                os.killpg(self.unshare.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.unshare.wait()
        self._log.close()


def gcircusd_as_pid1(config: str, log_path) -> PidNamespace:
    """gcircusd on `config` as PID 1 of a new PID namespace."""
    return PidNamespace([*GCIRCUSD, config], log_path)
