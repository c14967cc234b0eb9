"""fd:N readiness, s6 style: the child writes a newline to its descriptor N once it is ready.

gcircus.process gives the child the write end of a pipe as N (SpawnSpec.ready_fd) and keeps the read end as
`process.ready_pipe`; this waits on that read end without blocking the hub. Whatever the child writes before the
newline is read and dropped, so memory stays bounded however much it writes.
"""
from __future__ import annotations

import gevent

from gcircus.checks.outcome import Outcome

CHUNK = 512  # bytes read at a time while looking for the newline


def wait_fd_ready(pipe, timeout: float | None, *, child_fd: int) -> Outcome:
    """Wait until a newline comes through `pipe` (process.ready_pipe), at most `timeout` seconds (None: no limit).

    Not ready when the pipe reaches EOF first (every copy of the child's descriptor `child_fd` was closed, e.g. the
    child exited), when it is closed under us (close_pipes), or at the timeout; `child_fd` only words the detail.
    """
    timer = gevent.Timeout(timeout)
    timer.start()
    try:
        while True:
            chunk = pipe.read(CHUNK)
            if not chunk:
                return Outcome.failed(f"fd {child_fd} closed before a newline")
            if b"\n" in chunk:
                return Outcome(True, f"fd {child_fd} got a newline")
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        return Outcome.failed(f"no newline on fd {child_fd} within {timeout:g}s")
    except (OSError, ValueError):  # closed by close_pipes meanwhile (ValueError: read of a closed file)
        return Outcome.failed(f"fd {child_fd} closed before a newline")
    finally:
        timer.close()
