"""Helpers for the plugin tests: an in-process arbiter running a PluginManager, and a UDP listener that stands in
for statsd."""
from __future__ import annotations

import contextlib

import gevent
from gevent import socket as gsocket

from gcircus.daemon import Arbiter
from gcircus.events import message, topic
from gcircus.plugins import PluginManager
from gcircus.watcher import Watcher
from tests.support.waiting import wait_for


class UdpListener:
    """Collects the datagrams sent to 127.0.0.1:<port> as decoded strings."""

    def __init__(self):
        self.sock = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.packets: list[str] = []
        self._reader = gevent.spawn(self._read)

    def _read(self):
        while True:
            data, _ = self.sock.recvfrom(65536)
            self.packets.append(data.decode())

    def matching(self, prefix: str) -> list[str]:
        return [p for p in self.packets if p.startswith(prefix)]

    def wait(self, prefix: str, timeout: float = 4.0) -> str:
        return wait_for(lambda: (found := self.matching(prefix)) and found[-1], timeout, message=f"udp {prefix}")

    def close(self):
        self._reader.kill()
        self.sock.close()


@contextlib.contextmanager
def udp_listener():
    listener = UdpListener()
    try:
        yield listener
    finally:
        listener.close()


def plugin(name: str, use: str, **config) -> dict:
    """A plugin dict as the config loader builds it."""
    return {"name": f"plugin:{name}", "use": use, "priority": 1, "active": True,
            "config": {k: str(v) for k, v in config.items()}}


@contextlib.contextmanager
def supervised(watchers: list[dict], plugins: list[dict], events: list | None = None, arbiter_options=None,
               **manager_options):
    """An arbiter with `watchers` and a started PluginManager with `plugins`; everything stopped on exit.

    Plugins start first (as the arbiter will start them), so they see the watchers' first spawns.
    """
    arbiter = Arbiter([Watcher(**spec) for spec in watchers], check_delay=0.1, **(arbiter_options or {}))
    if events is not None:
        arbiter.subscribe(lambda event: events.append((topic(event), message(event))))
    manager = PluginManager(arbiter, plugins, arbiter.endpoint, arbiter.pubsub_endpoint, **manager_options)
    manager.start()
    try:
        arbiter.start(background=True)
        yield arbiter, manager
    finally:
        manager.stop()
        arbiter.stop()
