"""The system limits a large configuration runs into, checked when gcircusd starts instead of met half-way through.

Each process costs gcircusd the pipes of its output streams (and of an fd:N readiness check) and, per-process log
files aside, nothing else that is kept open: exits come through SIGCHLD, not a pidfd per child. With 10,000
processes whose stdout and stderr are both piped that is 20,000 descriptors, the hard RLIMIT_NOFILE of many
machines: without a check, gcircusd would start 9,990 of them and then retry the rest forever ("Too many open
files"). So, at start:

- the soft RLIMIT_NOFILE is raised to the hard limit (logged), and a configuration that needs more descriptors than
  that is refused, naming what to raise and what uses them;
- a configuration that needs more processes than the kernel can still give (kernel.pid_max and kernel.threads-max
  against the tasks that exist now, RLIMIT_NPROC) is refused, naming the sysctl or ulimit.

vm.max_map_count is not checked: it bounds the memory mappings of each process, and a child's are its own;
gcircusd's own mappings do not grow with the number of children (about 300 with 10,000 of them).
"""
from __future__ import annotations

import logging
import os
import resource
from collections.abc import Iterable
from typing import Any

from gcircus.streams.factory import needs_per_process

log = logging.getLogger(__name__)

# Descriptors gcircusd needs beside its children's pipes: its channels and their connections, log files, the
# pipes of a spawn in progress (Popen's error pipe, the pipes before they are handed to the readers).
RESERVED_FDS = 64
STREAMS = ("stdout", "stderr")


def descriptors_per_process(watcher: Any) -> tuple[int, list[str]]:
    """The descriptors gcircusd keeps open for each running process of `watcher`, and what they are for."""
    uses = []
    for stream in STREAMS:
        if watcher.outputs.wants_pipe(stream):
            uses.append(f"{stream} pipe")
            if needs_per_process(getattr(watcher, f"{stream}_stream")):
                uses.append(f"{stream} file of its own ($(circus.wid) in its name)")
    if watcher.checks.ready_fd is not None:
        uses.append("readiness pipe (ready = fd:N)")
    return len(uses), uses


def descriptors_needed(watchers: Iterable[Any]) -> tuple[int, list[str]]:
    """The descriptors the configuration needs once every process runs, and per watcher what it costs."""
    total, details = RESERVED_FDS, []
    for watcher in watchers:
        each, uses = descriptors_per_process(watcher)
        if each and watcher.numprocesses:
            total += each * watcher.numprocesses
            details.append(f"watcher {watcher.name!r}: {watcher.numprocesses} × {each} ({', '.join(uses)})")
    return total, details


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (logged when it changes); return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the file descriptor limit (RLIMIT_NOFILE) from %d to %d: %s", soft, hard, exc)
            return soft
        log.info("raised the file descriptor limit (RLIMIT_NOFILE) from %d to its hard limit %d", soft, hard)
        return hard
    return soft


def nofile_problem(watchers: list[Any], limit: int) -> str | None:
    needed, details = descriptors_needed(watchers)
    if limit == resource.RLIM_INFINITY or needed <= limit:
        return None
    return (f"the configuration needs about {needed} file descriptors ({'; '.join(details)}; {RESERVED_FDS} for "
            f"gcircusd itself), but the hard limit RLIMIT_NOFILE is {limit}: raise it (`ulimit -Hn` as root, "
            "LimitNOFILE= in a systemd unit, nofile in /etc/security/limits.conf), or run fewer processes or pipe "
            "fewer streams (a stream with no class is not piped)")


def tasks_now() -> int:
    """Tasks (processes and threads: each takes a pid) that exist on the machine now, from /proc/loadavg."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[1])
    except (OSError, IndexError, ValueError):
        return 0


def read_sysctl(name: str) -> int | None:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_problems(needed: int, running: int = 0) -> list[str]:
    """Why `needed` processes (of which `running` already run, e.g. adopted across a re-exec) cannot all start."""
    new = max(0, needed - running)
    problems, existing = [], tasks_now()
    for sysctl, what in (("kernel.pid_max", "pids"), ("kernel.threads-max", "tasks")):
        limit = read_sysctl(sysctl)
        if limit is not None and existing + new > limit:
            problems.append(f"the configuration needs {needed} processes, but the kernel allows {limit} {what} "
                            f"({sysctl}) and {existing} exist already: raise it (sysctl -w {sysctl}=N, or in "
                            "/etc/sysctl.d), or run fewer processes")
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY and os.geteuid() != 0 and needed > soft:
        problems.append(f"the configuration needs {needed} processes, but RLIMIT_NPROC allows {soft} for this user: "
                        "raise it (`ulimit -u`, LimitNPROC= in a systemd unit, nproc in /etc/security/limits.conf)")
    return problems


def check_at_start(watchers: list[Any], running: int = 0) -> list[str]:
    """Raise the fd limit, then say why the configuration cannot run here (empty: it can)."""
    limit = raise_nofile()
    problems = process_problems(sum(w.numprocesses for w in watchers), running)
    if (fds := nofile_problem(watchers, limit)) is not None:
        problems.insert(0, fds)
    return problems
