"""Per-process stats for the stats channel, read cheaply enough to sample thousands of processes every second.

The fields are Circus's "info" fields (see `gcircus.procinfo`), computed the way circusd-stats computes them: cpu is
the percentage of one core used since the previous sample of the same process (0.0 the first time), age counts from
the kernel's creation time. What differs is the cost. Per sample and process two small files are read, with one
open and one read each: `/proc/<pid>/stat` (state, CPU times, nice, start time) and `/proc/<pid>/statm` (sizes, the
file psutil reads for memory_info; the rss in stat is an approximation the kernel documents as such). What does not
change while a process lives (its creation time, user name and program name) is read with psutil on its first
samples (it may still be exec'ing), then every `REFRESH_EVERY` samples, in case it changed its title or user. The
start time in the stat line tells a reused pid from the process that had it before.
"""
from __future__ import annotations

import os
import time
from typing import Any

import psutil

from gcircus import linux, procinfo

NA = procinfo.NA
REFRESH_EVERY = 30  # samples between two re-reads of a process's user and program name
FRESH_SAMPLES = 3  # a process's first samples always re-read them, while it is young (it may still be exec'ing)
FRESH_SECONDS = 3.0  # young: first sampled less than this ago (a round-robin tick may sample it only every few s)
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class ProcessGone(Exception):
    """The process exited (or is a zombie awaiting its reaping)."""


class _Tracked:
    """What is known of one process between samples."""

    __slots__ = ("pid", "start_ticks", "create_time", "username", "program", "cpu_seconds", "sampled_at", "samples",
                 "first_seen")

    def __init__(self, pid: int, start_ticks: int):
        self.pid = pid
        self.start_ticks = start_ticks
        self.cpu_seconds: float | None = None
        self.sampled_at = 0.0
        self.samples = 0
        self.first_seen = time.monotonic()
        self.refresh()

    def refresh(self) -> None:
        """Read what does not change each second: creation time, user name, program name ("N/A" if unreadable)."""
        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                self.create_time: Any = procinfo.guarded(proc.create_time)
                self.username: Any = procinfo.guarded(lambda: procinfo.username(proc.uids().real))
                self.program: Any = procinfo.program(proc)
        except psutil.NoSuchProcess:
            raise ProcessGone(self.pid) from None


class ProcessSampler:
    """Samples processes by pid and remembers each one's previous CPU time, so `cpu` is the use between samples."""

    def __init__(self):
        self._tracked: dict[int, _Tracked] = {}
        self._seen: set[int] = set()

    def sample(self, pid: int) -> dict:
        """Circus's info dict of `pid` (children empty, as circusd-stats sends it); ProcessGone if it is gone."""
        try:
            stat = linux.read_stat(pid)
            sizes = linux.read_proc(pid, "statm").split()
        except (FileNotFoundError, ProcessLookupError):
            raise ProcessGone(pid) from None
        if stat.state == "Z":
            raise ProcessGone(pid)
        now = time.monotonic()
        tracked = self._tracked.get(pid)
        if tracked is None or tracked.start_ticks != stat.start_time:
            tracked = self._tracked[pid] = _Tracked(pid, stat.start_time)
        elif ((tracked.samples < FRESH_SAMPLES and now - tracked.first_seen < FRESH_SECONDS) or tracked.program == NA
              or (tracked.samples + pid) % REFRESH_EVERY == 0):
            # A new process may still be exec'ing (an empty or a wrapper's argv); processes started together
            # refresh on different samples, as the pid is in the modulus.
            tracked.refresh()
        tracked.samples += 1
        self._seen.add(pid)
        cpu_seconds = (stat.utime + stat.stime) / _TICKS
        if tracked.cpu_seconds is None or now <= tracked.sampled_at:
            cpu = 0.0
        else:
            cpu = round((cpu_seconds - tracked.cpu_seconds) / (now - tracked.sampled_at) * 100, 1)
        tracked.cpu_seconds, tracked.sampled_at = cpu_seconds, now
        return procinfo.info_dict(pid=pid, rss=int(sizes[1]) * _PAGE, vms=int(sizes[0]) * _PAGE, cpu=cpu,
                                  cpu_seconds=cpu_seconds, user=tracked.username, nice=stat.nice,
                                  created=tracked.create_time, cmdline=tracked.program)

    def forget_unseen(self) -> None:
        """Drop the state of processes not sampled since the previous call (they left their watcher)."""
        self.forget_except(self._seen)

    def forget_except(self, pids) -> None:
        """Drop the state of every process but `pids` (a container): those left their watcher. A tick that samples
        only part of the processes keeps the state of the others for their next sample."""
        self._tracked = {pid: tracked for pid, tracked in self._tracked.items() if pid in pids}
        self._seen = set()


def aggregate(infos: list[dict]) -> dict:
    """A watcher's total line: its pids, mean cpu, summed mem, oldest age ("N/A" where any value is unknown)."""
    cpus = [info["cpu"] for info in infos]
    mems = [info["mem"] for info in infos]
    ages = [info["age"] for info in infos if info["age"] != NA]
    return {
        "pid": [info["pid"] for info in infos],
        "cpu": NA if NA in cpus else (sum(cpus) / len(cpus) if cpus else 0.0),
        "mem": NA if NA in mems else sum(mems),
        "age": max(ages) if ages else NA,
    }
