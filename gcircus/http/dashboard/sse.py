"""Server-sent events to open pages, built so that no page can make gcircusd wait or grow.

Each open stream is a Subscriber: gcircusd hands it messages without ever waiting (`send` only queues), and the
stream's own response greenlet writes them out. Its queue is bounded in bytes: a page that does not keep up is
dropped (its connection closed; the page's EventSource reconnects and starts again from a fresh snapshot), or, for
a feed that may skip (the log tail), loses its oldest messages. A page that stops reading altogether leaves its
greenlet blocked in a socket write; the watchdog of the Pages registry kills such a greenlet after STALL_TIMEOUT,
which closes the connection. The number of open streams is capped (MAX_STREAMS): one more gets a 503 at once.
"""
from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.pool

log = logging.getLogger(__name__)

MAX_STREAMS = 32  # event streams open at once, all pages together (each page holds one, two with a log tail)
QUEUE_BYTES = 1 << 20  # bytes waiting for one stream before it is dropped (or, if it may skip, loses old messages)
KEEPALIVE = 15.0  # seconds of silence after which a comment line is sent (proxies close idle connections)
STALL_TIMEOUT = 30.0  # seconds one write to a page may take before that page is dropped
WATCH_EVERY = 5.0  # seconds between two looks of the watchdog for stalled streams
RETRY_MS = 2000  # how long a page's EventSource waits before it reconnects


def message(event: str, data: Any) -> bytes:
    """One SSE message: `event: NAME` and its data as one line of compact JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class TooManyStreams(Exception):
    """MAX_STREAMS streams are open: this one is refused."""


class Subscriber:
    """One open event stream: a byte-bounded queue filled without waiting, emptied by the stream's response."""

    def __init__(self, encode: Callable[[list], bytes] = b"".join, limit: int = QUEUE_BYTES, skips: bool = False,
                 on_close: Callable[[Subscriber], None] | None = None):
        self.encode = encode  # turns queued items into bytes, in the response greenlet (not on the sender's path)
        self.limit = limit
        self.skips = skips
        self.on_close = on_close
        self.closed = False
        self.reason = ""
        self.skipped = 0  # items a skipping stream dropped since it last wrote
        self.writing_since: float | None = None  # monotonic time the pending write started, while one is pending
        self._items: collections.deque = collections.deque()
        self._size = 0
        self._wake = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None
        self._finished = False

    def send(self, item: Any, size: int | None = None) -> None:
        """Queue `item` (bytes, or what `encode` takes, weighing `size` bytes); never waits."""
        if self.closed:
            return
        size = len(item) if size is None else size
        if self._size + size > self.limit:
            if not self.skips:
                self.drop(f"too slow: {self._size} bytes waiting")
                return
            while self._items and self._size + size > self.limit:
                self._size -= self._items.popleft()[1]
                self.skipped += 1
        self._items.append((item, size))
        self._size += size
        self._wake.set()

    def drop(self, reason: str) -> None:
        """Close the stream: its response ends, or, if it is stuck writing, its greenlet is killed (socket closed)."""
        if self.closed:
            return
        self.closed, self.reason = True, reason
        log.info("dashboard: event stream closed: %s", reason)
        self._wake.set()
        greenlet = self._greenlet
        if self.writing_since is not None and greenlet is not None and greenlet is not gevent.getcurrent():
            greenlet.kill(block=False)
        self._finish()

    def body(self, first: bytes = b"") -> StreamBody:
        """The WSGI response body of this stream (see `stream`); closing it unregisters the stream even if it was
        never iterated."""
        return StreamBody(self.stream(first), self._finish)

    def stream(self, first: bytes = b"") -> Iterator[bytes]:
        """`first`, then the queued messages as they come, with keepalive comments between."""
        self._greenlet = gevent.getcurrent()
        try:
            yield from self._write(f"retry: {RETRY_MS}\n".encode() + first)
            while not self.closed:
                if not self._items:
                    self._wake.clear()
                    if not self._wake.wait(KEEPALIVE):
                        yield from self._write(b": keepalive\n\n")
                    continue
                items = [item for item, _size in self._items]
                self._items.clear()
                self._size = 0
                skipped, self.skipped = self.skipped, 0
                yield from self._write(self.encode(items) if not skipped else
                                       message("skipped", {"count": skipped}) + self.encode(items))
        finally:
            self.writing_since = None
            self.closed = True
            self._finish()

    def _finish(self) -> None:
        self._items.clear()
        self._size = 0
        if not self._finished:
            self._finished = True
            if self.on_close is not None:
                self.on_close(self)

    def _write(self, data: bytes) -> Iterator[bytes]:
        self.writing_since = time.monotonic()
        yield data  # pywsgi writes it before asking for the next part: this is where a stalled page blocks us
        self.writing_since = None


class StreamBody:
    """A WSGI body whose close() also runs when the server never iterated it (the client left at once)."""

    def __init__(self, parts: Iterator[bytes], finish: Callable[[], None]):
        self._parts = parts
        self._finish = finish

    def __iter__(self) -> Iterator[bytes]:
        return self._parts

    def close(self) -> None:
        close = getattr(self._parts, "close", None)
        if close is not None:
            close()
        self._finish()


class Pages:
    """The open event streams, capped at `max_streams`, and the watchdog (running while any is open) that drops
    a stream stuck in one write for longer than `stall_timeout`."""

    def __init__(self, max_streams: int = MAX_STREAMS, stall_timeout: float = STALL_TIMEOUT):
        self.max_streams = max_streams
        self.stall_timeout = stall_timeout
        self.subscribers: set[Subscriber] = set()
        self._group = gevent.pool.Group()

    def open(self, encode: Callable[[list], bytes] = b"".join, skips: bool = False,
             on_close: Callable[[Subscriber], None] | None = None) -> Subscriber:
        """A new registered Subscriber; TooManyStreams when the cap is reached."""
        if len(self.subscribers) >= self.max_streams:
            raise TooManyStreams(f"{len(self.subscribers)} event streams are open (limit {self.max_streams})")

        def closed(subscriber: Subscriber) -> None:
            self.subscribers.discard(subscriber)
            if on_close is not None:
                on_close(subscriber)

        subscriber = Subscriber(encode, skips=skips, on_close=closed)
        self.subscribers.add(subscriber)
        if not self._group:
            self._group.spawn(self._watch_forever)
        return subscriber

    def _watch_forever(self) -> None:
        while self.subscribers:
            gevent.sleep(min(WATCH_EVERY, self.stall_timeout / 2))
            now = time.monotonic()
            for subscriber in list(self.subscribers):
                since = subscriber.writing_since
                if since is not None and now - since > self.stall_timeout:
                    subscriber.drop(f"stalled: one write has waited {now - since:.0f} s")

    def close(self) -> None:
        """Drop every stream and stop the watchdog."""
        for subscriber in list(self.subscribers):
            subscriber.drop("gcircusd's HTTP server is stopping")
        self.subscribers.clear()
        self._group.kill()
