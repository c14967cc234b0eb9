"""The event channel: each watcher event goes out on a zmq.green XPUB socket as gcircus.events.frames (PROTOCOL.md 3).

An XPUB is a PUB that also tells what its subscribers subscribe to: it is wire-compatible with every SUB client
(Circus's, CircusPlugin, gcircusctl listen), and lets the channel count its live subscriptions. That count is what
a hand-over (gcircusd re-executing itself, gcircus.handover) needs: the subscribers of the old image reconnect to
the new one by themselves, in zmq's reconnect interval, and what the new image publishes before they are back would
be dropped (PUB/SUB). So the new image's channel holds its events back (HeldEvents) until as many subscriptions as
the old one had are back, or HOLD_GRACE seconds passed (a subscriber gone for good), then publishes them in order.
"""
from __future__ import annotations

import collections
import logging
import time
from types import MappingProxyType
from typing import Any

import gevent
import zmq.green as zmq

from gcircus.events import Event, frames
from gcircus.wire.connection_cap import ConnectionCap
from gcircus.wire.curve import KeyPair
from gcircus.wire.endpoints import IpcMode, bind_private, close_bound

log = logging.getLogger(__name__)

# Events zmq keeps per subscriber that has not read them; past that, that subscriber misses events. A mass restart of
# N processes publishes about 4N events at once (kill, reap, spawn, ready): 10,000 keeps a subscriber reading at its
# own pace complete through a restart of 2,500 processes, for at most a few MiB per subscriber (their number is capped).
EVENT_HWM = 10_000
HOLD_GRACE = 5.0  # seconds a new image holds its events back at most for the old image's subscribers to reconnect
HELD_LIMIT = EVENT_HWM  # events held back at most; later ones are dropped (counted, logged) until they are published
HOLD_POLL = 0.1  # seconds between two looks at the subscriptions while holding events back
SUBSCRIBE, UNSUBSCRIBE = 1, 0  # the first byte of an XPUB subscription message


class HeldEvents:
    """Events kept back for subscribers that are reconnecting (gcircusd re-executing itself), in order, bounded.

    `subscriptions` is how many the replaced channel had: the events go out once that many are back. Until an
    EventPublisher takes them over, `attach(arbiter)` collects the arbiter's events (the new image's reaps of
    children that exited during the exec come before its channel is bound).
    """

    def __init__(self, subscriptions: int, events: list[Event] | None = None, grace: float = HOLD_GRACE,
                 limit: int = HELD_LIMIT):
        self.subscriptions = max(0, int(subscriptions))
        self.grace = grace
        self.limit = limit
        self.events: collections.deque[Event] = collections.deque(events or ())
        self.dropped = 0
        self._arbiter = None

    def keep(self, event: Event) -> None:
        if len(self.events) >= self.limit:
            self.dropped += 1
            return
        self.events.append(event)

    def attach(self, arbiter) -> None:
        """Keep the arbiter's events from now on, until detach() (the publisher subscribed itself)."""
        self._arbiter = arbiter
        arbiter.subscribe(self.keep)

    def detach(self) -> None:
        if self._arbiter is not None:
            self._arbiter.unsubscribe(self.keep)
            self._arbiter = None

    def to_state(self) -> dict:
        """What the hand-over snapshot carries: the subscription count and the events held (JSON)."""
        return {"subscriptions": self.subscriptions,
                "events": [[e.watcher, e.name, dict(e.fields), e.time] for e in self.events]}

    @classmethod
    def from_state(cls, state: dict) -> HeldEvents:
        """The HeldEvents a snapshot carried; an event this version does not know is logged and left out."""
        events = []
        for watcher, name, fields, stamp in state.get("events", []):
            try:
                events.append(Event(watcher, name, MappingProxyType(dict(fields)), float(stamp)))
            except (ValueError, TypeError) as exc:
                log.warning("a held event of watcher %r is not published: %s", watcher, exc)
        return cls(state.get("subscriptions", 0), events)


class EventPublisher:
    """Publishes arbiter events; a slow or absent subscriber never blocks the daemon (XPUB drops at its HWM).

    `held`: events the channel holds back (and keeps holding back what comes next, in order) until its subscriptions
    reach `held.subscriptions` or `held.grace` seconds passed since start.
    """

    def __init__(self, arbiter, endpoint: str, context=None, allow_remote: bool = False,
                 held: HeldEvents | None = None, curve: KeyPair | None = None):
        self.arbiter = arbiter
        self.endpoint = endpoint
        self.context = context or zmq.Context.instance()
        self.allow_remote = allow_remote
        self.curve = curve  # the daemon's key pair: a tcp:// endpoint is then a CURVE server
        self.socket: Any = None  # the zmq.green XPUB socket while open
        self.subscriptions = 0  # live ones: subscribe messages minus unsubscribe ones (a disconnect sends those)
        self._held = held
        self._hold_until: float | None = None
        self._cap: ConnectionCap | None = None
        self._reader: gevent.Greenlet | None = None
        # Events waiting for the next flush: they are sent in batches, once per turn of the hub (see _send).
        self._outbox: collections.deque[Event] = collections.deque()
        self._flush_scheduled = False
        self._send_now: Any = None  # send_multipart of a plain socket over the XPUB (see start)

    def start(self) -> None:
        sock = self.context.socket(zmq.XPUB)
        sock.linger = 0
        sock.sndhwm = EVENT_HWM
        sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscription, duplicates too: a count, not a set
        try:
            secured = bind_private(sock, "pubsub_endpoint", self.endpoint, self.allow_remote, IpcMode.of(self.arbiter),
                                   self.curve)
        except Exception:
            sock.close()
            raise
        self.socket = sock
        # Sends never wait (NOBLOCK: a full queue drops). Through the green socket itself, not a raw shadow of it: a
        # shadow knows nothing of the socket's closing, and a send on a closed socket's freed handle aborts the
        # process instead of raising ENOTSOCK.
        self._send_now = sock.send_multipart
        self._cap = ConnectionCap(sock, "pubsub_endpoint", curve=secured)
        self._cap.start()
        self.arbiter.subscribe(self.publish)
        if self._held is not None:
            self._held.detach()  # from here on what comes goes through publish(), behind what is held
            self._hold_until = time.monotonic() + self._held.grace
            self._release_if_back()
        self._reader = gevent.spawn(self._follow_subscriptions)

    @property
    def holding(self) -> bool:
        return self._held is not None

    def publish(self, event: Event) -> None:
        if self._held is not None:
            self._held.keep(event)
        elif self.socket is not None:
            self._send(event)

    def _send(self, event: Event) -> None:
        """Queue the event's frames; they go out, in order, with every other event of this turn of the hub.

        A burst (a mass restart: tens of thousands of events) then costs zmq's I/O thread one wake-up per batch
        instead of one per event, and the publishing greenlet one append. The flush is a hub callback, not a
        greenlet: it runs before the hub next waits, so an event waits microseconds, not a tick.
        """
        self._outbox.append(event)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            gevent.get_hub().loop.run_callback(self.flush)

    def flush(self) -> None:
        """Send every queued event now (never blocks: a subscriber past its HWM misses them, as with PUB).

        With no subscription at all the batch is dropped unencoded, as zmq would drop it after the encoding and a
        send each: 25 us per event, 0.5 s of a 10,000-process stop. The count is brought up to date first (a
        non-blocking read of the subscriptions zmq has received), so a subscriber that zmq would deliver to is
        never skipped.
        """
        self._flush_scheduled = False
        outbox, send = self._outbox, self._send_now
        if outbox and send is not None and self._held is None:
            try:
                self._count_subscriptions()
            except zmq.ZMQError:
                send = None  # closed meanwhile
        if send is None or self.subscriptions == 0:
            outbox.clear()
            return
        while outbox:
            event = outbox.popleft()
            try:
                message = frames(event)
            except (TypeError, ValueError) as exc:  # a field JSON cannot encode: that event only is lost
                log.warning("could not publish %s.%s: %s", event.watcher, event.name, exc)
                continue
            try:
                send(message, zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EAGAIN:
                    log.warning("could not publish %s: %s", message[0].decode(errors="replace"), exc)

    def _follow_subscriptions(self) -> None:
        """Count the subscriptions as subscribers send them; publish what is held once they are back, or in time.

        zmq's descriptor is edge-triggered and a send may consume its edge, so while holding the count is looked at
        every HOLD_POLL seconds too. Otherwise the reader waits in a green recv, which wakes the daemon only when a
        message comes (and every 11.6 s, zmq.green's guard against a lost edge) where zmq.green's poll woke it every
        1.33 s: an idle gcircusd's only wake-ups. A count that a lost edge leaves behind is brought up to date by
        the next flush, which reads the subscriptions itself before it sends."""
        while True:
            try:
                if self._hold_until is None:
                    self._count(self.socket.recv())
                else:
                    self.socket.poll(max(0.0, min(HOLD_POLL, self._hold_until - time.monotonic())) * 1000)
                self._count_subscriptions()
            except zmq.ZMQError:
                return  # closed
            if self._hold_until is not None and time.monotonic() >= self._hold_until:
                self._release(f"not every subscriber was back within {self._held.grace:g}s")  # type: ignore

    def _count_subscriptions(self) -> None:
        """Read every (un)subscription message waiting, without blocking; release what is held once they are back."""
        while True:
            try:
                message = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._count(message)

    def _count(self, message: bytes) -> None:
        """Count one (un)subscription message; release what is held once the subscribers are back."""
        if message[:1] == bytes([SUBSCRIBE]):
            self.subscriptions += 1
        elif message[:1] == bytes([UNSUBSCRIBE]):
            self.subscriptions = max(0, self.subscriptions - 1)
        self._release_if_back()

    def _release_if_back(self) -> None:
        if self._held is not None and self.subscriptions >= self._held.subscriptions:
            self._release("the subscribers are back")

    def _release(self, why: str) -> None:
        """Publish what is held, in order, and stop holding (no yield in between: nothing overtakes it)."""
        held, self._held, self._hold_until = self._held, None, None
        if held is None:
            return
        log.info("event channel: publishing the %d events held back over the hand-over (%s)", len(held.events), why)
        if held.dropped:
            log.warning("event channel: %d events were dropped while held back (more than %d)", held.dropped,
                        held.limit)
        while held.events:
            self._send(held.events.popleft())

    def hold_back(self) -> HeldEvents:
        """Stop publishing for a hand-over: what is still held, with the count of subscriptions to wait for once the
        channel is back (in the new image, or in this one if the exec fails). The caller attaches it to the arbiter
        at once (no yield in between: no event is lost) and closes the channel as usual."""
        self.arbiter.unsubscribe(self.publish)
        self.flush()  # what was published before goes out before the channel closes
        try:
            self._count_subscriptions()  # those the reader has not looked at yet count too
        except zmq.ZMQError:
            pass
        previous = self._held
        held = HeldEvents(previous.subscriptions if previous is not None else self.subscriptions,
                          list(previous.events) if previous is not None else None)
        if previous is not None:
            held.dropped = previous.dropped
        self._held = self._hold_until = None
        return held

    def close(self) -> None:
        self.arbiter.unsubscribe(self.publish)
        self.flush()
        self._send_now = None
        if self._reader is not None:
            self._reader.kill()  # waits for it to end before the socket closes
            self._reader = None
        close_bound(self.socket, self.endpoint, self._cap)
        self.socket = self._cap = None
