"""The event channel: each watcher event goes out on a zmq.green PUB socket as gcircus.events.frames (PROTOCOL.md 3)."""
from __future__ import annotations

import logging

import zmq.green as zmq

from gcircus.events import Event, frames
from gcircus.wire.connection_cap import ConnectionCap
from gcircus.wire.curve import KeyPair
from gcircus.wire.endpoints import bind_private, close_bound

log = logging.getLogger(__name__)

EVENT_HWM = 1000  # events zmq keeps per subscriber that has not read them; past that, that subscriber misses events


class EventPublisher:
    """Publishes arbiter events; a slow or absent subscriber never blocks the daemon (PUB drops at its HWM)."""

    def __init__(self, arbiter, endpoint: str, context=None, allow_remote: bool = False, curve: KeyPair | None = None):
        self.arbiter = arbiter
        self.endpoint = endpoint
        self.context = context or zmq.Context.instance()
        self.allow_remote = allow_remote
        self.curve = curve  # the daemon's key pair: a tcp:// endpoint is then a CURVE server
        self.socket = None
        self._cap: ConnectionCap | None = None

    def start(self) -> None:
        sock = self.context.socket(zmq.PUB)
        sock.linger = 0
        sock.sndhwm = EVENT_HWM
        try:
            secured = bind_private(sock, "pubsub_endpoint", self.endpoint, self.allow_remote, curve=self.curve)
        except Exception:
            sock.close()
            raise
        self.socket = sock
        self._cap = ConnectionCap(sock, "pubsub_endpoint", curve=secured)
        self._cap.start()
        self.arbiter.subscribe(self.publish)

    def publish(self, event: Event) -> None:
        if self.socket is None:
            return
        try:
            self.socket.send_multipart(frames(event), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EAGAIN:
                log.warning("could not publish %s of watcher %r: %s", event.name, event.watcher, exc)

    def close(self) -> None:
        self.arbiter.unsubscribe(self.publish)
        close_bound(self.socket, self.endpoint, self._cap)
        self.socket = self._cap = None
