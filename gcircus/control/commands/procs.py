"""procs: where one watcher and each of its processes stand (state, age, restarts, last exit, readiness detail).

`status` answers with one word per watcher because Circus clients print and compare that word; everything an
operator needs to understand a watcher that is starting, backing off or failed (why, until when, which process is
not ready, how the last one ended) comes from this command instead, as JSON or as gcircusctl's table.
"""
from __future__ import annotations

import time
from typing import Any

from gcircus.control.commands.base import Command, Prop, register
from gcircus.roles import READ

COLUMNS = ("PID", "WID", "STATE", "AGE", "RESTARTS", "LAST EXIT", "DETAIL")
NONE = "-"  # what the table shows for a field that has no value


@register
class Procs(Command):
    """Each process of a watcher: pid, wid, state, age, restarts, last exit and readiness/health detail.

    procs NAME

    gcircusctl prints a line about the watcher (its state and why, how many processes are ready, when a back-off
    retries), then a table with a row per process: running ones, then those being stopped. A process is spawned,
    ready, unhealthy or stopping; RESTARTS counts how often the process of that wid was replaced after exiting on its
    own, and LAST EXIT says how the last one ended. DETAIL is what the readiness or health check said, and the text
    the process reports itself (sd_notify STATUS=). The reply: {"watcher": {state, reason, numprocesses, ready,
    depends_on, backoffs, max_backoffs, retry_at, spawn_failures, name, and with cgroup_root cgroup: {path, procs,
    memory_current}}, "processes": [{pid, wid, state, age, started,
    restarts, last_exit: {pid, code, time, description} or null, ready_at, detail, status}]}.
    """

    role = READ

    properties = (Prop("name", required=True),)

    def console(self, reply):
        watcher = reply.get("watcher") or {}
        rows = [process_row(p) for p in reply.get("processes") or []]
        table = aligned([COLUMNS, *rows]) if rows else "no processes"
        return watcher_line(watcher) + "\n" + table


def watcher_line(watcher: dict, now: float | None = None) -> str:
    """`web: backoff (why), ready 0/2, back-off 1 of 5, retry at 18:02:11 (in 4s), depends on db`."""
    line = f"{watcher.get('name', '?')}: {watcher.get('state', '?')}"
    if watcher.get("reason"):
        line += f" ({watcher['reason']})"
    parts = [f"ready {watcher.get('ready', 0)}/{watcher.get('numprocesses', 0)}"]
    if watcher.get("state") == "backoff":  # a failed watcher's reason already says how many back-offs it took
        parts.extend(_backoff_parts(watcher, time.time() if now is None else now))
    if watcher.get("depends_on"):
        parts.append("depends on " + ", ".join(watcher["depends_on"]))
    if isinstance(watcher.get("cgroup"), dict):
        parts.append(_cgroup_part(watcher["cgroup"]))
    return line + ", " + ", ".join(parts)


def _cgroup_part(cgroup: dict) -> str:
    """`cgroup: 3 processes, 12.5 MiB` (the memory only where the memory controller is enabled)."""
    text = f"cgroup: {cgroup.get('procs', 0)} processes"
    if isinstance(cgroup.get("memory_current"), int):
        text += f", {cgroup['memory_current'] / 1048576:.1f} MiB"
    return text


def _backoff_parts(watcher: dict, now: float) -> list[str]:
    """`back-off 1 of 5` (crash loop) or `3 failed spawns`, and `retry at 18:02:11 (in 4s)`."""
    parts = []
    if watcher.get("backoffs"):
        limit = watcher.get("max_backoffs")
        parts.append(f"back-off {watcher['backoffs']}" + (f" of {limit}" if limit not in (None, -1) else ""))
    if watcher.get("spawn_failures"):
        parts.append(f"{watcher['spawn_failures']} failed spawns")
    retry_at = watcher.get("retry_at")
    if isinstance(retry_at, (int, float)):
        clock = time.strftime("%H:%M:%S", time.localtime(retry_at))
        parts.append(f"retry at {clock} (in {human_duration(retry_at - now)})")
    return parts


def process_row(process: dict) -> tuple[str, ...]:
    last_exit = process.get("last_exit")
    detail = "; ".join(str(text) for text in (process.get("detail"), process.get("status")) if text)
    return (str(process.get("pid", NONE)), str(process.get("wid", NONE)), str(process.get("state") or NONE),
            human_duration(process["age"]) if isinstance(process.get("age"), (int, float)) else NONE,
            str(process.get("restarts", 0)),
            str(last_exit.get("description") or NONE) if isinstance(last_exit, dict) else NONE,
            detail or NONE)


def aligned(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns two spaces apart (the last column unpadded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip() for row in rows)


def human_duration(seconds: Any) -> str:
    """5s, 3m12s, 2h, 2h5m, 3d4h: whole units, the two largest, for an operator's glance (negative counts as 0)."""
    left = int(max(0.0, float(seconds)))
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if left >= size:
            rest = (left % size) // smaller_size
            return f"{left // size}{unit}" + (f"{rest}{smaller}" if rest else "")
    return f"{left}s"
