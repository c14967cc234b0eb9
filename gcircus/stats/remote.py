"""The pid list of a daemon seen from outside (gcircusd-stats): `list` calls, then the event channel.

It works against gcircusd and Circus's circusd alike. It subscribes to `watcher.` events before the first `list`,
so no spawn falls between the two. Pids are added on `spawn` and removed on `reap` or `kill` (Circus sends no `reap`
for processes it kills itself), a `stop` empties the watcher, `remove` forgets it. Every `resync` seconds the list
is read again, which repairs whatever a lost event or a restarted daemon left wrong. Watchers are named by their
res_name (lowercase, spaces as `_`) whether they come from `list` or from an event topic.
"""
from __future__ import annotations

import json
import logging
import os

import gevent

from gcircus.client import CallError, Client
from gcircus.consumer import Consumer
from gcircus.events import TOPIC_PREFIX, res_name, split_topic
from gcircus.stats.service import DAEMON_NAME

log = logging.getLogger(__name__)

SELF_NAME = "circusd-stats"
INTERNAL_WATCHERS = ("circusd-stats", "circushttpd", "circusd")  # Circus's own helpers are shown under `circus`


class DaemonFollower:
    """Keeps {watcher: [pids]} of the daemon at `endpoint`, following its events on `pubsub`."""

    def __init__(self, endpoint: str, pubsub: str, curve_key: str | None = None, server_key: str | None = None,
                 timeout: float = 5.0, resync: float = 30.0):
        """`curve_key`, `server_key`: this client's secret and the daemon's public CURVE certificates, for a daemon
        whose endpoints require CURVE (CurveKeyError, a ValueError, if one cannot be used)."""
        self.endpoint = endpoint
        self.resync = resync
        self.client = Client(endpoint, timeout, green=True, curve_key=curve_key, server_key=server_key)
        self.consumer = Consumer([TOPIC_PREFIX.encode()], pubsub, timeout=0.5, green=True, curve_key=curve_key,
                                 server_key=server_key)
        self.watchers: dict[str, dict[int, None]] = {}  # an ordered set of pids per watcher
        self.daemon_pid: int | None = None
        self._replay: list[tuple[bytes, bytes]] | None = None  # events seen while a sync runs
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._follow_events), gevent.spawn(self._keep_synced)]

    def close(self) -> None:
        gevent.killall(self._greenlets)
        self._greenlets = []
        self.consumer.close()
        self.client.close()

    # -- the sources of StatsLoop ----------------------------------------------------------------------------

    def groups(self) -> dict[str, list[int]]:
        return {name: list(pids) for name, pids in self.watchers.items()}

    def circus_pids(self) -> dict[int, str]:
        pids = {os.getpid(): SELF_NAME}
        if self.daemon_pid is not None:
            pids[self.daemon_pid] = DAEMON_NAME
        return pids

    # -- keeping the list -------------------------------------------------------------------------------------

    def sync(self) -> None:
        """Read the watcher and pid lists with `list`, and the daemon's pid with `dstats`; CallError if no reply."""
        watchers: dict[str, dict[int, None]] = {}
        self._replay = []
        try:
            for name in self.client.call("list", check=True).get("watchers", []):
                if name in INTERNAL_WATCHERS:
                    continue
                pids = self.client.call("list", name=name).get("pids", [])
                watchers[res_name(name)] = dict.fromkeys(pids)
            info = self.client.call("dstats").get("info")
        finally:
            replay, self._replay = self._replay, None
        self.daemon_pid = info.get("pid") if isinstance(info, dict) else None
        self.watchers = watchers
        for topic, body in replay:  # what changed while the lists were read
            self.handle_event(topic, body)

    def handle_event(self, topic: bytes, body: bytes) -> None:
        if self._replay is not None:
            self._replay.append((topic, body))
        watcher, action = split_topic(topic)
        if not watcher:
            return
        try:
            msg = json.loads(body)
        except ValueError:
            return
        pid = msg.get("process_pid") if isinstance(msg, dict) else None
        if action == "spawn" and isinstance(pid, int):
            self.watchers.setdefault(watcher, {})[pid] = None
        elif action in ("reap", "kill"):
            self.watchers.get(watcher, {}).pop(pid, None)
        elif action == "stop":
            self.watchers.get(watcher, {}).clear()
        elif action == "add":
            self.watchers.setdefault(watcher, {})
        elif action == "remove":
            self.watchers.pop(watcher, None)

    def _follow_events(self) -> None:
        for topic, body in self.consumer:
            self.handle_event(topic, body)

    def _keep_synced(self) -> None:
        warned = False
        while True:
            try:
                self.sync()
                warned = False
                delay = self.resync
            except CallError as exc:
                if not warned:
                    log.warning("no answer from the daemon at %s (%s); retrying", self.endpoint, exc)
                    warned = True
                delay = 1.0
            gevent.sleep(delay)
