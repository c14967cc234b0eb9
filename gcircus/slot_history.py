"""What happened to the processes of one wid of a watcher (shown by `procs`), and how an exit is worded.

Apart from gcircus.watcher so that the watcher's hand-over code (gcircus.watcher_handover) restores it without
importing the watcher.
"""
from __future__ import annotations

import signal
import time


class SlotHistory:
    """What happened to the processes of one wid: how often one was replaced after exiting on its own (or failing
    its checks), and how the last one ended. Shown by `procs`."""

    __slots__ = ("restarts", "last_exit")

    def __init__(self):
        self.restarts = 0
        self.last_exit: dict | None = None

    def exited(self, process) -> None:
        """It exited on its own: `code` is its exit code (-signal after a signal)."""
        self.restarts += 1
        self.last_exit = {"pid": process.pid, "code": process.exit.returncode if process.exit else None,
                          "time": process.exit.time if process.exit else time.time(),
                          "description": describe_exit(process)}

    def lost(self, process, reason: str) -> None:
        """Its checks failed: it is being replaced, for `reason`."""
        self.restarts += 1
        self.last_exit = {"pid": process.pid, "code": None, "time": time.time(), "description": reason}


def describe_exit(process) -> str:
    """`code 7`, `signal SIGKILL`, or `unknown status` for a process whose exit is not known."""
    if process.exit is None:
        return "unknown status"
    code = process.exit.returncode
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
