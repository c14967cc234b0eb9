"""The pieces of the scale benchmark (run_scale.py): configs with or without output streams, a daemon's direct
children read cheaply enough to poll 10,000 of them, a control-latency sampler that runs during a start or a mass
restart, and a stop that waits for 10,000 children without a /proc scan per round.

Everything here polls the kernel's own children list of the daemon (/proc/PID/task/TID/children, one small read per
thread) instead of psutil's scan of every process on the machine: at 10,000 processes a psutil scan costs the
runner about half a second of CPU, which it would take from the daemon it measures on a 2-core machine.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import psutil

from _control_clients import CircusProtocolClient, SupervisorClient
from harness import SLEEP, circus_section, free_endpoint, launch, supervisord_section

WORKLOADS = ("sleep", "files")  # files: the stdout of every process to a FileStream (one pipe each)


# ---- configs ------------------------------------------------------------------------------------------------------

def circus_ini(tmp: Path, n: int, marker: str, workload: str, statsd: bool = False) -> Path:
    """The ini gcircusd and circusd read alike: N copies of `sleep MARKER`, with `files` their stdout to a FileStream.

    stdout only: with stderr to a stream as well, 10,000 processes need 20,000 pipes, more than the hard fd limit
    of the machine this benchmark was written on (20,000; gcircusd refuses such a config at start, saying so)."""
    extra = {"statsd": "true", "stats_endpoint": free_endpoint()} if statsd else {}
    text = circus_section(**extra).replace("statsd = false\n", "") if statsd else circus_section()
    text += f"[watcher:work]\ncmd = {SLEEP}\nargs = {marker}\nnumprocesses = {n}\n"
    if workload == "files":
        text += f"stdout_stream.class = FileStream\nstdout_stream.filename = {tmp}/work.stdout.log\n"
    path = tmp / "circus.ini"
    path.write_text(text)
    return path


def supervisord_conf(tmp: Path, n: int, marker: str, workload: str) -> Path:
    """supervisord's equivalent: one [program] with numprocs; `files` logs each process's output to a file of its
    own (supervisord has no shared log file per program)."""
    logs = ("stdout_logfile = %(here)s/work_%(process_num)d.out\nstderr_logfile = NONE\n"
            if workload == "files" else "stdout_logfile = NONE\nstderr_logfile = NONE\n")
    path = tmp / "supervisord.conf"
    path.write_text(supervisord_section(tmp) + f"[supervisorctl]\nserverurl = unix://{tmp}/supervisor.sock\n\n"
                    f"[program:work]\ncommand = {SLEEP} {marker}\nnumprocs = {n}\n"
                    "process_name = %(program_name)s_%(process_num)d\nautostart = true\nautorestart = true\n"
                    "startsecs = 0\n" + logs)
    return path


# ---- the daemon's children ---------------------------------------------------------------------------------------

def direct_children(pid: int) -> set[int]:
    """The direct children of `pid` as the kernel lists them (zombies included); empty once `pid` is gone."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.update(map(int, f.read().split()))
    return found


def start_ticks(pid: int) -> int | None:
    """The start time of `pid` in clock ticks after boot (None once gone): with the pid, it names one process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2:].split()[19])


def proc_state(pid: int) -> str:
    """The state letter of /proc/PID/stat ("" once the pid is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return chr(data[data.rfind(b")") + 2])


class Children:
    """The workload children of one daemon: direct children whose argv is exactly `[.../sleep, marker]` (the
    program exec'd). A positive answer is cached per pid; a killed pid is never counted again (`forget`), even while
    it waits to be reaped as a zombie."""

    def __init__(self, daemon_pid: int, marker: str):
        self.daemon_pid, self.marker = daemon_pid, marker.encode()
        self.known: set[int] = set()
        self.dead: set[int] = set()

    def forget(self, pid: int) -> None:
        self.known.discard(pid)
        self.dead.add(pid)

    def is_workload(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:-1]
        except OSError:
            return False
        return len(argv) == 2 and argv[0].endswith(b"sleep") and argv[1] == self.marker

    def replaced(self, old: dict[int, int | None]) -> bool:
        """Whether every process of `old` (pid -> start_ticks) is gone, dropping those found gone from `old` (and from
        the cache: their pid may come back as a new process, pid_max is 32768 here)."""
        kids = direct_children(self.daemon_pid)
        for pid in [pid for pid, ticks in old.items() if pid not in kids or start_ticks(pid) != ticks]:
            del old[pid]
            self.known.discard(pid)
        return not old

    def workload(self) -> set[int]:
        kids = direct_children(self.daemon_pid) - self.dead
        self.known &= kids
        self.known.update(pid for pid in kids - self.known if self.is_workload(pid))
        return set(self.known)


def last_pid() -> int:
    """The pid the kernel handed out last, machine-wide (/proc/loadavg's fifth field)."""
    with open("/proc/loadavg") as f:
        return int(f.read().split()[4])


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2:].split()[1])


class NewChildWatch:
    """Waits for a new workload child of the daemon by looking only at the pids created since it began: one tiny
    read of /proc/loadavg per poll, plus the new pids. Reading the daemon's children list instead (10,000 pids)
    every millisecond took the runner a core, which it took from the daemon it measured."""

    def __init__(self, children: Children):
        self.children = children
        self.since = last_pid()
        self.pid_max = int(open("/proc/sys/kernel/pid_max").read())
        self.candidates: set[int] = set()  # new children of the daemon that have not exec'd the workload yet

    def found(self) -> int | None:
        now = last_pid()
        pid = self.since
        while pid != now:
            pid = pid + 1 if pid < self.pid_max - 1 else 300  # the kernel wraps to 300
            if parent_of(pid) == self.children.daemon_pid:
                self.candidates.add(pid)
        self.since = now
        for pid in list(self.candidates):
            if self.children.is_workload(pid):
                return pid
            if parent_of(pid) != self.children.daemon_pid:
                self.candidates.discard(pid)
        return None


# ---- control clients, and a sampler of the control channel's latency ---------------------------------------------

class Control:
    """The daemon's control channel, whatever the supervisor: `ping` is its cheapest request (numwatchers, or
    supervisord's getState), `status`/`list_work` the measured ones (supervisord: getAllProcessInfo for both)."""

    def __init__(self, kind: str, tmp: Path, endpoint: str | None, timeout: float = 30.0):
        self.kind, self.tmp, self.endpoint, self.timeout = kind, tmp, endpoint, timeout
        self.client = self.connect()

    def connect(self):
        if self.kind == "supervisord":
            return SupervisorClient(str(self.tmp / "supervisor.sock"), self.timeout)
        return CircusProtocolClient(self.endpoint, self.timeout)

    def ping(self, client=None) -> object:
        client = client or self.client
        if self.kind == "supervisord":
            return client.proxy.supervisor.getState()
        return client.call("numwatchers")

    def status(self, client=None) -> object:
        client = client or self.client
        return client.all_process_info() if self.kind == "supervisord" else client.call("status")

    def list_work(self, client=None) -> object:
        client = client or self.client
        return client.all_process_info() if self.kind == "supervisord" else client.call("list", name="work")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


class LatencySampler:
    """A thread calling `ping` every `interval` seconds on a client of its own until stopped, recording round trips.

    Calls before the first answer are not counted (the channel may not be bound yet); a call without an answer
    in `timeout` counts as `timeout` seconds, and a new client is made for the next one.
    """

    def __init__(self, control: Control, interval: float = 0.02, timeout: float = 5.0):
        self.control, self.interval, self.timeout = control, interval, timeout
        self.samples: list[float] = []
        self.timeouts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        client, answered = None, False
        while not self._stop.is_set():
            if client is None:
                client = Control(self.control.kind, self.control.tmp, self.control.endpoint, self.timeout).client
            t0 = time.perf_counter()
            try:
                self.control.ping(client)
            except Exception:  # noqa: BLE001 - no answer (yet): a timeout sample once the channel answered
                with contextlib.suppress(Exception):
                    client.close()
                client = None
                if answered:
                    self.samples.append(self.timeout)
                    self.timeouts += 1
                else:
                    self._stop.wait(0.05)  # not serving yet (supervisord's socket does not exist yet)
                continue
            if answered:
                self.samples.append(time.perf_counter() - t0)
            answered = True
            self._stop.wait(self.interval)
        with contextlib.suppress(Exception):
            client and client.close()

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(self.timeout + 2)
        return self.samples


# ---- the daemon's lifetime ---------------------------------------------------------------------------------------

def start_daemon(argv: list[str], tmp: Path) -> psutil.Popen:
    return launch(argv, tmp, tmp / "daemon.log")


def stop_and_time(daemon: psutil.Popen, timeout: float) -> float | None:
    """SIGTERM the daemon; seconds until it and all its children are gone (None after `timeout`: then everything
    is SIGKILLed). A child counts as gone once it is a zombie or has no /proc entry."""
    children = direct_children(daemon.pid)
    t0 = time.perf_counter()
    elapsed = None
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        while time.perf_counter() - t0 < timeout:
            children = {pid for pid in children if proc_state(pid) not in ("", "Z", "X")}
            if daemon.poll() is not None and not children:
                elapsed = time.perf_counter() - t0
                break
            time.sleep(0.02)
    if daemon.poll() is None:
        daemon.kill()
        with contextlib.suppress(psutil.TimeoutExpired):
            daemon.wait(10)
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return elapsed


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1
