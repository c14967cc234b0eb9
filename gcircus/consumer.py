"""A subscriber to the event channel: iterate over `(topic, message)` byte pairs (PROTOCOL.md 3.1, 4.8).

The shape is Circus's CircusConsumer, so code written for it works unchanged. Like any zmq SUB socket it sees only
events published after its subscription reached the daemon; nothing is replayed. The green/plain choice follows
the same rule as `gcircus.client` (see `gcircus.client.want_green`), and so do the CURVE keys (`curve_key`,
`server_key`) of a channel that requires them.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import zmq

from gcircus.client import want_green, zmq_flavour
from gcircus.options import CIRCUS_OPTIONS
from gcircus.wire.curve import ClientKeys

DEFAULT_PUBSUB_ENDPOINT = CIRCUS_OPTIONS["pubsub_endpoint"].default


class Consumer:
    """SUB socket on `endpoint` subscribed to `topics` (prefixes; empty or None means every event)."""

    def __init__(self, topics: Iterable[bytes | str] | None = None, endpoint: str = DEFAULT_PUBSUB_ENDPOINT,
                 timeout: float = 1.0, context=None, green: bool | None = None, curve_key: str | None = None,
                 server_key: str | None = None):
        self.endpoint = endpoint
        self.curve = ClientKeys.load(curve_key, server_key)  # CurveKeyError (a ValueError) for a bad file
        self.timeout = float(timeout)  # poll interval: how soon iteration notices stop()
        self.topics = [t.encode() if isinstance(t, str) else bytes(t) for t in (topics or [b""])]
        self.green = want_green() if green is None else bool(green)
        self._zmq, self.context = zmq_flavour(self.green, context)
        self.socket = self.context.socket(zmq.SUB)
        self.socket.linger = 0
        if self.curve is not None:
            self.curve.apply(self.socket)
        for topic in self.topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.socket.connect(endpoint)
        self._stopped = False

    def recv(self, timeout: float | None = None) -> tuple[bytes, bytes] | None:
        """The next event, or None when none came within `timeout` seconds (None waits forever)."""
        if timeout is not None and not self.socket.poll(max(timeout, 0) * 1000):
            return None
        frames = self.socket.recv_multipart()
        return frames[0], frames[-1] if len(frames) > 1 else b""

    def iter_messages(self) -> Iterator[tuple[bytes, bytes]]:
        """Yield events until `stop()`; the socket is polled every `timeout` seconds to notice it."""
        while not self._stopped:
            event = self.recv(self.timeout)
            if event is not None:
                yield event

    __iter__ = iter_messages

    def wait_for(self, prefix: bytes | str, timeout: float) -> tuple[bytes, bytes] | None:
        """The first event whose topic starts with `prefix` within `timeout` seconds (others are skipped)."""
        prefix = prefix.encode() if isinstance(prefix, str) else prefix
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            event = self.recv(remaining)
            if event is not None and event[0].startswith(prefix):
                return event
        return None

    def stop(self) -> None:
        """End iteration at the next poll (callable from another greenlet of the same thread)."""
        self._stopped = True

    def close(self) -> None:
        self._stopped = True
        if not self.socket.closed:
            self.socket.close(linger=0)

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
