"""The event channel holds its events back over a hand-over until the subscribers it had are back (or its grace
passed), then publishes them in order: a real XPUB, real SUB sockets, a real arbiter's events."""
from __future__ import annotations

import json

import pytest
import zmq

from gcircus.arbiter import Arbiter
from gcircus.consumer import Consumer
from gcircus.control.publisher import EventPublisher, HeldEvents
from gcircus.watcher import Watcher
from tests.support.ports import free_port
from tests.support.waiting import wait_for


@pytest.fixture
def channel():
    """`channel(held)`: (watcher, publisher, subscribe) with the publisher started; everything closed afterwards."""
    opened: list = []

    def make(held: HeldEvents | None = None):
        watcher = Watcher("w", "sleep 1000")
        arbiter = Arbiter([watcher])
        if held is not None:
            held.attach(arbiter)
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        publisher = EventPublisher(arbiter, endpoint, held=held)
        publisher.start()
        opened.append(publisher)

        def subscribe() -> Consumer:
            consumer = Consumer([b"watcher.w."], endpoint=endpoint, timeout=0.1, green=True)
            opened.append(consumer)
            return consumer
        return watcher, publisher, subscribe
    yield make
    for thing in reversed(opened):
        thing.close()


def topics(consumer: Consumer, count: int) -> list[str]:
    received = []
    for _ in range(count):
        event = consumer.recv(30)
        assert event is not None, f"only {received} arrived"
        received.append(event[0].decode())
    return received


def test_held_events_wait_for_every_subscription_then_go_out_in_order(channel):
    held = HeldEvents(subscriptions=2)
    watcher, publisher, subscribe = channel(held)
    watcher.notify("add")  # before the channel opened: held, not lost
    first = subscribe()
    wait_for(lambda: publisher.subscriptions == 1, timeout=30, message="the first subscription counted")
    watcher.notify("updated")
    assert publisher.holding  # one subscriber of two is back
    second = subscribe()
    wait_for(lambda: not publisher.holding, timeout=30, message="the events released")
    watcher.notify("start")  # after the release: behind the held ones
    for consumer in (first, second):
        assert topics(consumer, 3) == ["watcher.w.add", "watcher.w.updated", "watcher.w.start"]


def test_held_events_go_out_after_the_grace_when_a_subscriber_does_not_come_back(channel):
    watcher, publisher, subscribe = channel(HeldEvents(subscriptions=2, grace=0.2))
    consumer = subscribe()
    wait_for(lambda: publisher.subscriptions == 1, timeout=30, message="the subscription counted")
    watcher.notify("updated")
    wait_for(lambda: not publisher.holding, timeout=30, message="the grace over")
    assert topics(consumer, 1) == ["watcher.w.updated"]


def test_hold_back_counts_the_live_subscriptions_and_keeps_what_comes_next(channel):
    watcher, publisher, subscribe = channel()
    subscribe(), subscribe()
    wait_for(lambda: publisher.subscriptions == 2, timeout=30, message="both subscriptions counted")
    held = publisher.hold_back()
    held.attach(publisher.arbiter)
    watcher.notify("stop")
    state = json.loads(json.dumps(held.to_state()))  # what the snapshot carries
    assert state["subscriptions"] == 2 and [e[1] for e in state["events"]] == ["stop"]
    state["events"].append(["w", "no-such-event", {}, 1.0])  # from another version: left out, logged
    carried = HeldEvents.from_state(state)
    assert carried.subscriptions == 2 and [e.name for e in carried.events] == ["stop"]


def test_an_event_reaches_a_subscriber_whose_subscription_was_not_counted_yet(channel):
    """With no subscription counted the channel drops its events unencoded; it must first look at the subscriptions
    zmq has received: one that arrived since the count was last taken gets the event, as a plain PUB would send it."""
    watcher, publisher, subscribe = channel()
    publisher._reader.kill()  # the channel's reader would count the subscription first: only the flush looks now
    consumer = subscribe()
    arrived = zmq.Socket.poll(publisher.socket, 30_000, zmq.POLLIN)  # a plain poll: the subscription is in zmq
    assert arrived and publisher.subscriptions == 0
    watcher.notify("start")
    assert topics(consumer, 1) == ["watcher.w.start"]
    assert publisher.subscriptions == 1


def test_events_without_any_subscription_are_dropped_and_later_ones_still_go_out(channel):
    watcher, publisher, subscribe = channel()
    watcher.notify("stop")
    publisher.flush()  # (else the next turn of the hub sends it) nobody listens: dropped, as zmq would drop it
    consumer = subscribe()
    wait_for(lambda: publisher.subscriptions == 1, timeout=30, message="the subscription counted")
    watcher.notify("start")
    assert topics(consumer, 1) == ["watcher.w.start"]
