"""The last output of a watcher's processes, kept in memory for whoever wants to look (the dashboard's log tail).

Readers hand every record they pass to a sink to the watcher's OutputTail too. Keeping it must cost next to nothing
on that path, which runs on the hub for every chunk a child writes: a record is appended as it is (no decoding, no
splitting into lines) and the oldest ones are dropped once the tail holds more than `limit` bytes; a record larger
than the whole limit keeps only its end. Lines are cut out only when somebody reads the tail. Followers (a page
following the tail live) are called with each record on the same path, so they must only queue it, never wait.

Only what gcircusd reads is here: the streams piped to a sink (a configured stdout_stream/stderr_stream, or
prefix_output). A stream left unconfigured goes straight to gcircusd's own stdout, and has no tail.
"""
from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

log = logging.getLogger(__name__)

TAIL_BYTES = 32 << 10  # bytes of output kept per watcher (both streams together)
MAX_LINE_TEXT = 4096  # characters of one line a reader of the tail gets (the rest is cut, marked with an ellipsis)


class Chunk(NamedTuple):
    """One record as a reader passed it on: one or more lines of one stream of one process."""

    time: float
    stream: str  # stdout or stderr
    pid: int
    wid: int
    data: bytes


class TailLine(NamedTuple):
    time: float
    stream: str
    pid: int
    wid: int
    text: str


Follower = Callable[[Chunk], None]


class OutputTail:
    """A byte-bounded ring of a watcher's latest output records, and the followers told of each new one."""

    def __init__(self, limit: int = TAIL_BYTES):
        self.limit = limit
        self._chunks: collections.deque[Chunk] = collections.deque()
        self._size = 0
        self._followers: list[Follower] = []

    def add(self, record: dict) -> None:
        """Keep a reader's record (data, pid, name, wid); drop the oldest past the limit; tell the followers."""
        data = record["data"]
        if not data:
            return
        if len(data) > self.limit:
            data = data[-self.limit:]
        chunk = Chunk(time.time(), record["name"], record["pid"], record["wid"], data)
        self._chunks.append(chunk)
        self._size += len(data)
        while self._size > self.limit:
            self._size -= len(self._chunks.popleft().data)
        for follower in list(self._followers):
            try:
                follower(chunk)
            except Exception:  # noqa: BLE001 - a broken follower must not break the child's output
                log.exception("output tail follower failed")
                self.unfollow(follower)

    def lines(self, count: int | None = None) -> list[TailLine]:
        """The kept output as lines, oldest first (the last `count` of them when given)."""
        lines = [line for chunk in self._chunks for line in split_lines(chunk)]
        return lines if count is None else lines[-count:] if count > 0 else []

    def follow(self, follower: Follower) -> None:
        self._followers.append(follower)

    def unfollow(self, follower: Follower) -> None:
        if follower in self._followers:
            self._followers.remove(follower)

    @property
    def followers(self) -> int:
        return len(self._followers)


def split_lines(chunk: Chunk) -> list[TailLine]:
    """A chunk's lines as text (invalid UTF-8 replaced, a very long line cut); a trailing newline adds no line."""
    text = chunk.data.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    return [TailLine(chunk.time, chunk.stream, chunk.pid, chunk.wid,
                     line if len(line) <= MAX_LINE_TEXT else line[:MAX_LINE_TEXT] + "…")
            for line in text.split("\n")]
