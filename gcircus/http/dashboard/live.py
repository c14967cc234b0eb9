"""What open pages receive live: watcher changes from gcircusd's event bus, usage samples, and output tails.

The state feed subscribes in-process to the arbiter's events (the same bus the PUB publisher and the plugins are
fed from) only while a page is open. An event is forwarded at once (`bus`), and marks its watcher as changed: one
refresher greenlet then reads that watcher again through the `procs` command and sends every page the new view
(`watcher`, or `removed`), at most every REFRESH_PACE seconds per round, however many events came meanwhile. Each
message is encoded once and queued to every page (gcircus.http.dashboard.sse), so the cost of an event does not grow
with the number of pages. A sampler greenlet sends CPU and memory (`usage`) every SAMPLE_INTERVAL seconds, again
only while a page is open. A page starts with a `snapshot` of every watcher and the latest usage sample.

A tail stream follows one watcher's OutputTail (gcircus.streams.tail): the last TAIL_LINES lines first, then each
new record. It skips rather than drops: a page that cannot keep up with a chatty child loses the oldest output.
"""
from __future__ import annotations

import json
import logging
import time

import gevent
import gevent.event
import gevent.pool

from gcircus.http.dashboard import model
from gcircus.http.dashboard.sse import Pages, Subscriber, message
from gcircus.http.dashboard.usage import SAMPLE_INTERVAL, UsageSampler
from gcircus.streams.tail import Chunk, split_lines

log = logging.getLogger(__name__)

REFRESH_PACE = 0.1  # seconds between two rounds of re-reading the watchers events changed
FIRST_SAMPLE_AFTER = 1.0  # seconds between the first two usage samples (the first one has no CPU figure yet)


class LiveFeed:
    """The state feed of every open page: one event subscription, one refresher, one sampler, shared."""

    def __init__(self, arbiter, pages: Pages, interval: float = SAMPLE_INTERVAL):
        self.arbiter = arbiter
        self.pages = pages
        self.interval = interval
        self.sampler = UsageSampler()
        self.last_usage: dict | None = None
        self._subscribers: set[Subscriber] = set()
        self._changed: set[str] = set()
        self._wake = gevent.event.Event()
        self._group = gevent.pool.Group()  # refresher and sampler, running while a page is open
        self._generation = 0  # bumped at each stop: a loop of an earlier generation ends

    def open(self) -> tuple[Subscriber, bytes]:
        """A new page: its Subscriber (TooManyStreams past the cap) and its first message, the snapshot."""
        subscriber = self.pages.open(on_close=self._closed)
        if not self._subscribers:
            self.arbiter.subscribe(self._on_event)
            self._group.spawn(self._refresh_forever, self._generation)
            self._group.spawn(self._sample_forever, self._generation)
        self._subscribers.add(subscriber)
        try:
            snapshot = {"time": time.time(), "watchers": model.all_views(self.arbiter), "usage": self.last_usage,
                        "interval": self.interval}
        except BaseException:
            subscriber.drop("the snapshot failed")  # never streamed: unregistered here
            raise
        return subscriber, message("snapshot", snapshot)

    def _closed(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        if not self._subscribers:
            self._stop()

    def _stop(self) -> None:
        """The last page is gone: no more subscription, sampling or refreshing. May run inside either loop (a
        broadcast dropped the last page), and on an event's path: it never waits, and never kills its own greenlet
        (that loop sees the new generation and ends)."""
        self.arbiter.unsubscribe(self._on_event)
        self._changed.clear()
        self.sampler = UsageSampler()
        self.last_usage = None
        self._generation += 1
        self._wake.set()
        current = gevent.getcurrent()
        for greenlet in list(self._group):
            if greenlet is not current:
                greenlet.kill(block=False)

    def close(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber.drop("gcircusd's HTTP server is stopping")
        self._subscribers.clear()
        self._stop()

    def broadcast(self, data: bytes) -> None:
        for subscriber in list(self._subscribers):
            subscriber.send(data)

    def _on_event(self, event) -> None:
        """Called on the hub by the arbiter for every event: queue, mark, return."""
        self.broadcast(message("bus", {"watcher": event.watcher, "name": event.name, "time": event.time,
                                       "fields": dict(event.fields)}))
        self._changed.add(event.watcher)
        self._wake.set()

    def _refresh_forever(self, generation: int) -> None:
        while True:
            self._wake.wait()
            if generation != self._generation:
                return
            self._wake.clear()
            changed, self._changed = self._changed, set()
            for name in sorted(changed):
                if generation != self._generation:
                    return
                view = model.watcher_view(self.arbiter, name)
                self.broadcast(message("watcher", view) if view is not None else message("removed", {"name": name}))
            gevent.sleep(REFRESH_PACE)

    def _sample_forever(self, generation: int) -> None:
        delay = FIRST_SAMPLE_AFTER
        while generation == self._generation:
            try:
                usage = self.sampler.sample(model.pid_groups(self.arbiter))
            except Exception:  # noqa: BLE001 - a failing sample must not end the feed
                log.exception("dashboard: usage sample failed")
            else:
                if generation != self._generation:
                    return
                self.last_usage = {"time": time.time(), "watchers": usage}
                self.broadcast(message("usage", self.last_usage))
            gevent.sleep(delay)
            delay = self.interval


class TailFeed:
    """Streams of one watcher's output tail each."""

    def __init__(self, arbiter, pages: Pages):
        self.arbiter = arbiter
        self.pages = pages

    def open(self, name: str) -> tuple[Subscriber, bytes] | None:
        """A new tail stream of watcher `name` and its first message (the kept lines); None if it has no tail."""
        tail = model.output_tail(self.arbiter, name)
        if tail is None:
            return None

        def follow(chunk: Chunk) -> None:
            subscriber.send(chunk, len(chunk.data))

        subscriber = self.pages.open(encode=encode_chunks, skips=True, on_close=lambda _s: tail.unfollow(follow))
        tail.follow(follow)
        first = message("lines", {"watcher": name, "lines": [list(line) for line in tail.lines(model.TAIL_LINES)]})
        return subscriber, first

    def close(self) -> None:
        """Nothing of its own: its streams are in the Pages registry, which drops them."""


def encode_chunks(chunks: list[Chunk]) -> bytes:
    """Records of a tail as one `lines` message: [[time, stream, pid, wid, text], ...]."""
    lines = [list(line) for chunk in chunks for line in split_lines(chunk)]
    return b"event: lines\ndata: " + json.dumps({"lines": lines}, separators=(",", ":")).encode() + b"\n\n"
