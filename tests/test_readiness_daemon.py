"""Readiness gating a real gcircusd: a rolling reload of slow-starting web workers under HTTP load loses no request
and never drops below numprocesses - 1 ready workers; `start --waiting` and `reloadconfig --waiting` reply only
once the new workers are ready.

The workers (tests/support/children/web_worker.py) share gcircusd's [socket:web], take 1 s to start and then say
READY=1. What the daemon did is read from its event channel, in the order it published it; a reply is placed in that
order by a marker: once it came, the test changes an option of a `marker` watcher, whose `updated` event is
published after everything the daemon published before the reply.
"""
from __future__ import annotations

import json
import sys

import gevent
import pytest

from gcircus.client import Client
from gcircus.consumer import Consumer
from tests.support.children import web_worker
from tests.support.load import Load
from tests.support.ports import free_port
from tests.support.waiting import wait_for

NUMPROCESSES = 4


def web_config(port: int, delay: str = "1") -> str:
    return f"""
        [socket:web]
        host = 127.0.0.1
        port = {port}

        [watcher:web]
        cmd = {sys.executable} {web_worker.__file__} $(circus.sockets.web) {delay}
        use_sockets = True
        numprocesses = {NUMPROCESSES}
        ready = notify
        ready_timeout = 60
        graceful_timeout = 10

        [watcher:marker]
        cmd = sleep 1000
        graceful_timeout = 1

        [watcher:subscribed]
        cmd = sleep 1000
        graceful_timeout = 1
        """


class Events:
    """Every event the daemon publishes once subscribed, as (topic, message), in order; `marker()` places a moment.

    Subscribing is confirmed by the `updated` event of another watcher (`subscribed`): until one arrives, several
    may be sent, and the late ones must not be taken for markers.
    """

    def __init__(self, pubsub: str, client: Client):
        self.client = client
        self.consumer = Consumer([b"watcher."], endpoint=pubsub, timeout=0.05)
        self.events: list[tuple[str, dict]] = []
        self.reader = gevent.spawn(self._read)
        self.markers = 0
        # Subscribed once a marker sent now arrives (events before the subscription reached the daemon are lost).
        wait_for(lambda: self._touch("subscribed") and self.of("watcher.subscribed.updated"), 30, interval=0.1,
                 message="subscribed")

    def _read(self) -> None:
        for topic, body in self.consumer:
            self.events.append((topic.decode(), json.loads(body)))

    def _touch(self, watcher: str) -> bool:
        """Change an option of `watcher`: it publishes `updated`."""
        self.client.call("set", name=watcher, options={"graceful_timeout": 1 + len(self.events) % 7}, check=True)
        return True

    def _markers_seen(self) -> int:
        return sum(topic == "watcher.marker.updated" for topic, _ in self.events)

    def marker(self) -> int:
        """Publish a marker now; return its index in `events`: everything published before this call is before it."""
        self.markers += 1
        self._touch("marker")
        wait_for(lambda: self._markers_seen() >= self.markers, 30, message="the marker event")
        return [i for i, (topic, _) in enumerate(self.events) if topic == "watcher.marker.updated"][self.markers - 1]

    def of(self, topic: str, start: int = 0, end: int | None = None) -> list[dict]:
        return [m for t, m in self.events[start:end] if t == topic]

    def close(self) -> None:
        self.consumer.stop()
        self.reader.join(5)
        self.consumer.close()


class Web:
    """gcircusd running the web workers, with a client (long timeout: waiting replies take seconds) and events."""

    def __init__(self, gcircusd):
        self.port = free_port()
        self.running = gcircusd(web_config(self.port))
        self.client = Client(self.running.endpoint, timeout=120)
        self.events = Events(self.running.pubsub, self.client)
        wait_for(lambda: self.status() == "active" and len(self.pids()) == NUMPROCESSES, 60, interval=0.05,
                 message="the web workers active")

    def call(self, command: str, **props) -> dict:
        return self.client.call(command, check=True, **props)

    def pids(self) -> list[int]:
        return sorted(self.call("list", name="web")["pids"])

    def status(self) -> str:
        return self.call("status", name="web")["status"]

    def close(self) -> None:
        self.events.close()
        self.client.close()


@pytest.fixture
def web(gcircusd):
    w = Web(gcircusd)
    yield w
    w.close()


def lowest_ready(events: list[tuple[str, dict]], ready: set[int]) -> int:
    """The fewest workers ready (and not told to stop) at any point of `events`, starting from `ready`."""
    ready, lowest = set(ready), len(ready)
    for topic, message in events:
        if topic == "watcher.web.ready":
            ready.add(message["process_pid"])
        elif topic in ("watcher.web.kill", "watcher.web.reap", "watcher.web.not_ready", "watcher.web.unhealthy"):
            ready.discard(message["process_pid"])
        lowest = min(lowest, len(ready))
    return lowest


@pytest.mark.parametrize("sequential", [False, True], ids=["new-first", "sequential"])
def test_rolling_reload_under_load_loses_no_request_and_keeps_capacity(web, sequential):
    # New first: the old workers are stopped once all new ones are ready. Sequential: one at a time, each stopped
    # before its replacement starts, so one worker less at most.
    old = web.pids()
    with Load(web.port) as load:
        wait_for(lambda: load.ok.get("warmup", 0) > 20, 60, message="requests served before the reload")
        start = web.events.marker()
        load.begin("reload")
        web.call("reload", name="web", waiting=True, sequential=sequential)
        new = web.pids()
        assert len(new) == NUMPROCESSES and not set(new) & set(old)
        load.wait_served_by("reload", new)
        load.steady()
    end = web.events.marker()
    assert not load.failures, {phase: (len(f), f[:5]) for phase, f in load.failures.items()}
    assert load.ok.get("reload", 0) > 0
    window = web.events.events[start:end]
    assert lowest_ready(window, set(old)) == (NUMPROCESSES - 1 if sequential else NUMPROCESSES)
    assert sorted(m["process_pid"] for m in web.events.of("watcher.web.ready", start, end)) == new
    assert sorted(m["process_pid"] for m in web.events.of("watcher.web.reap", start, end)) == old
    assert web.status() == "active"


def test_start_waiting_replies_after_every_worker_is_ready(web):
    web.call("stop", name="web", waiting=True)
    start = web.events.marker()
    web.call("start", name="web", waiting=True)
    replied = web.events.marker()
    pids = web.pids()
    assert len(pids) == NUMPROCESSES
    assert sorted(m["process_pid"] for m in web.events.of("watcher.web.ready", start, replied)) == pids
    assert web.status() == "active"


def test_reloadconfig_waiting_replies_after_the_new_workers_are_ready(web):
    old = web.pids()
    config = web.running.daemon.config
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace("$(circus.sockets.web) 1\n", "$(circus.sockets.web) 1.0\n"))
    start = web.events.marker()
    reply = web.call("reloadconfig", waiting=True)
    replied = web.events.marker()
    assert reply["plan"]["watchers"]["reloaded"] == {"web": ["cmd"]}, reply
    new = web.pids()
    assert len(new) == NUMPROCESSES and not set(new) & set(old)
    assert sorted(m["process_pid"] for m in web.events.of("watcher.web.ready", start, replied)) == new


def test_restart_and_incr_waiting_reply_after_the_new_workers_are_ready(web):
    old = web.pids()
    start = web.events.marker()
    web.call("restart", name="web", waiting=True)
    replied = web.events.marker()
    restarted = web.pids()
    assert len(restarted) == NUMPROCESSES and not set(restarted) & set(old)
    assert sorted(m["process_pid"] for m in web.events.of("watcher.web.ready", start, replied)) == restarted

    web.call("incr", name="web", waiting=True)
    incremented = web.events.marker()
    [added] = set(web.pids()) - set(restarted)
    assert [m["process_pid"] for m in web.events.of("watcher.web.ready", replied, incremented)] == [added]


def test_start_waiting_names_the_watcher_and_the_cause_when_it_never_gets_ready(gcircusd, tmp_path):
    running = gcircusd(f"""
        [watcher:silent]
        cmd = {sys.executable} -c "import time; time.sleep(1000)"
        ready = notify
        ready_timeout = 1
        graceful_timeout = 1
        autostart = false
        flapping.attempts = 2
        flapping.window = 60
        flapping.retry_in = 0.1
        flapping.max_retry = 1
        """)
    client = Client(running.endpoint, timeout=120)
    try:
        reply = client.call("start", name="silent", waiting=True)
    finally:
        client.close()
    assert reply["status"] == "error", reply
    assert "watcher 'silent' failed: crash loop" in reply["reason"], reply
    assert running.call("status", name="silent")["status"] == "failed"
