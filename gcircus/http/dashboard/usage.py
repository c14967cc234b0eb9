"""CPU and memory of every watcher's processes, sampled for the dashboard's charts as cheaply as Linux allows.

The dashboard samples only while a page is open, every SAMPLE_INTERVAL seconds, and a thousand processes must cost
well under 1% of a core. So a sample reads one small file per process, `/proc/<pid>/stat`, with one open and one
read: the CPU times (utime + stime) and the resident set size (in pages; the kernel calls it an approximation, which
is plenty for a chart). CPU is the percentage of one core used since that process's previous sample, as top and the
stats channel report it; a process's first sample reports None (nothing to compare with yet). The `stats` command
(psutil, many more fields) costs ten times as much per process, which is why the charts do not go through it.
"""
from __future__ import annotations

import os
import time

import gevent

from gcircus import linux
from gcircus.procinfo import YIELD_AFTER

SAMPLE_INTERVAL = 5.0  # seconds between two samples while a page is open (10 minutes of chart: 120 points)
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def read_usage(pid: int) -> tuple[int, float, int]:
    """(start time in ticks, CPU seconds, RSS bytes) of `pid`; OSError once it is gone."""
    data = linux.read_proc(pid, "stat")
    # After the command name's last ")": state is field 0, utime 11, stime 12, starttime 19, rss 21.
    fields = data[data.rfind(b")") + 2:].split(None, 22)
    if len(fields) < 22 or fields[0] in (b"Z", b"X"):
        raise ProcessLookupError(pid)
    return int(fields[19]), (int(fields[11]) + int(fields[12])) / _TICKS, int(fields[21]) * _PAGE


class UsageSampler:
    """Samples processes by pid, remembering each one's CPU time to report the use between two samples."""

    def __init__(self):
        self._previous: dict[int, tuple[int, float, float]] = {}  # pid -> (start ticks, cpu seconds, when)

    def sample(self, groups: dict[str, list[int]]) -> dict[str, dict]:
        """{watcher: {"cpu": %, "rss": bytes, "procs": {pid: [cpu % or None, rss]}}} for the given pids."""
        seen: dict[int, tuple[int, float, float]] = {}
        result: dict[str, dict] = {}
        started = time.monotonic()
        for name, pids in groups.items():
            procs: dict[str, list] = {}
            cpu_total, rss_total = 0.0, 0
            for pid in pids:
                if time.monotonic() - started > YIELD_AFTER:
                    gevent.sleep(0)
                    started = time.monotonic()
                cpu, rss = self._one(pid, seen)
                if rss is None:
                    continue
                procs[str(pid)] = [cpu, rss]
                cpu_total += cpu or 0.0
                rss_total += rss
            result[name] = {"cpu": round(cpu_total, 1), "rss": rss_total, "procs": procs}
        self._previous = seen  # processes not sampled this time are forgotten
        return result

    def _one(self, pid: int, seen: dict) -> tuple[float | None, int | None]:
        try:
            start, cpu_seconds, rss = read_usage(pid)
        except OSError:
            return None, None
        now = time.monotonic()
        before = self._previous.get(pid)
        seen[pid] = (start, cpu_seconds, now)
        if before is None or before[0] != start or now <= before[2]:
            return None, rss
        return round(max(0.0, cpu_seconds - before[1]) / (now - before[2]) * 100, 1), rss
