"""Helpers of the readiness and health tests: the child program's command line, watchers stopped after the test,
and reading what a watcher shows of its processes."""
from __future__ import annotations

import json
import os
import shlex

from gcircus.watcher import Watcher
from tests.support.children import ready_child
from tests.support.processes import PYTHON
from tests.support.waiting import wait_for

READY_CHILD = ready_child.__file__


def child(*steps: str) -> str:
    """The command line (quoted for a shell, or for cmd) of a ready_child running `steps` (see its docstring)."""
    return shlex.join([PYTHON, READY_CHILD, *steps])


class Watchers:
    """Watchers made for one test (`make(name, cmd, **options)`); every one is stopped at the end."""

    def __init__(self):
        self.made: list[Watcher] = []

    def __call__(self, name: str = "w", cmd: str = "/bin/sleep 1000", **options) -> Watcher:
        options.setdefault("graceful_timeout", 5)
        watcher = Watcher(name, cmd, **options)
        self.made.append(watcher)
        return watcher

    def stop_all(self) -> None:
        for watcher in self.made:
            watcher.stop()


def row(watcher: Watcher, pid: int | None = None) -> dict | None:
    """What `procs` shows of `pid` (of the only process when None), or None while there is no such process."""
    rows = watcher.process_rows()
    if pid is None:
        return rows[0] if len(rows) == 1 else None
    return next((r for r in rows if r["pid"] == pid), None)


def wait_row(watcher: Watcher, message: str, pid: int | None = None, **expected) -> dict:
    """Wait until the row of `pid` (the only process) has every `expected` value; return it."""
    def matches():
        found = row(watcher, pid)
        return found if found and all(found[key] == value for key, value in expected.items()) else None
    return wait_for(lambda: matches(), 30, message=message)


def read_env(path) -> dict:
    """The environment a ready_child wrote with `env=PATH` (waits for it)."""
    wait_for(lambda: os.path.exists(path), 30, message=f"the environment in {path}")
    with open(path) as f:
        return json.load(f)


def read_count(path) -> int:
    """The counter a ready_child writes (`pings=...`): 0 until it wrote one."""
    try:
        with open(path) as f:
            return int(f.read() or 0)
    except FileNotFoundError:
        return 0
