"""Replies on their way to clients: a burst waits for a client that reads, a client that never reads loses them.

zmq holds only REPLY_HWM unread replies per client (what a client that never reads could otherwise pile up), so a
burst larger than that (a stop cancelling 64 queued commands answers them all at once) must wait somewhere: here,
up to BACKLOG_BYTES per client. A client whose backlog is full, or that takes no reply for STALL_SECONDS, is not
reading: what waits for it is dropped, counted and logged.
"""
from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

import gevent

log = logging.getLogger(__name__)

BACKLOG_BYTES = 1 << 20  # replies waiting in gcircusd for one client once zmq's own room for it is full
STALL_SECONDS = 30.0  # a client that takes none of its waiting replies for this long does not read
RETRY_FIRST, RETRY_MAX = 0.005, 1.0  # seconds between two tries to hand a waiting reply to zmq
DROP_LOG_EVERY = 1000  # dropped replies are logged at the first, then every this many


class _Backlog:
    __slots__ = ("replies", "size", "progress")

    def __init__(self):
        self.replies: collections.deque[list[bytes]] = collections.deque()
        self.size = 0
        self.progress = time.monotonic()


class ReplyOutbox:
    """Sends through `try_send(frames) -> bool` (False: no room for that client now), keeping bursts per client."""

    def __init__(self, try_send: Callable[[list[bytes]], bool]):
        self._try_send = try_send
        self._backlogs: dict[bytes, _Backlog] = {}
        self._flusher: gevent.Greenlet | None = None
        self.dropped = 0

    def send(self, frames: list[bytes]) -> None:
        """Send now, or after the replies already waiting for that client (frames[0] is its identity)."""
        identity = frames[0]
        backlog = self._backlogs.get(identity)
        if backlog is None:
            if self._try_send(frames):
                return
            backlog = self._backlogs[identity] = _Backlog()
        size = sum(len(frame) for frame in frames)
        if backlog.size + size > BACKLOG_BYTES:
            self._drop(1, "its backlog is full")
            return
        backlog.replies.append(frames)
        backlog.size += size
        if self._flusher is None:
            self._flusher = gevent.spawn(self._flush)

    def close(self, grace: float) -> None:
        """Give waiting replies `grace` seconds to go out (a quit's reply among them), then drop the rest."""
        flusher = self._flusher
        if flusher is not None:
            flusher.join(grace)
            flusher.kill()  # waits for it to end: nothing is sent once closed
        self._backlogs.clear()

    def _drop(self, count: int, why: str) -> None:
        before, self.dropped = self.dropped, self.dropped + count
        if before // DROP_LOG_EVERY != self.dropped // DROP_LOG_EVERY or before == 0:
            log.warning("control channel: a client does not read its replies (%s); %d replies dropped so far",
                        why, self.dropped)

    def _flush(self) -> None:
        delay = RETRY_FIRST
        try:
            while self._backlogs:
                moved = False
                now = time.monotonic()
                for identity, backlog in list(self._backlogs.items()):
                    while backlog.replies and self._try_send(backlog.replies[0]):
                        frames = backlog.replies.popleft()
                        backlog.size -= sum(len(frame) for frame in frames)
                        backlog.progress = now
                        moved = True
                    if not backlog.replies:
                        del self._backlogs[identity]
                    elif now - backlog.progress > STALL_SECONDS:
                        del self._backlogs[identity]
                        self._drop(len(backlog.replies), f"none taken for {STALL_SECONDS:g} s")
                if self._backlogs:
                    delay = RETRY_FIRST if moved else min(delay * 2, RETRY_MAX)
                    gevent.sleep(delay)
        finally:
            self._flusher = None
