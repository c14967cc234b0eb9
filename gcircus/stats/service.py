"""Stats published from inside gcircusd: the watchers' processes are read from the arbiter on each tick.

No separate process, no event bookkeeping: the pid list is whatever the arbiter supervises at that moment, so
spawns and reaps show up at the next sample without any message being exchanged.
"""
from __future__ import annotations

import logging
import os

from gcircus.options import DEFAULT_STATS_ENDPOINT
from gcircus.stats.channel import StatsLoop, StatsPublisher
from gcircus.wire.curve import KeyPair
from gcircus.wire.endpoints import IpcMode

log = logging.getLogger(__name__)

DAEMON_NAME = "circusd"  # the name circus-top shows next to gcircusd's pid (Circus's own for its daemon)


class StatsService:
    """Samples every watcher's live processes and gcircusd itself every `interval` s and PUBlishes them."""

    def __init__(self, arbiter, endpoint: str, interval: float = 1.0, context=None, curve: KeyPair | None = None):
        self.arbiter = arbiter
        self.endpoint = endpoint
        self.publisher = StatsPublisher(endpoint, context, bool(arbiter.allow_remote_endpoints),
                                        ipc=IpcMode.of(arbiter), curve=curve)
        self.loop = StatsLoop(self.publisher, self._groups, self._circus_pids, interval)
        # The loop's interval never changes, and its timing (the cost of the last sample) is updated in place.
        self.interval, self.timing = self.loop.interval, self.loop.timing

    @classmethod
    def for_arbiter(cls, arbiter, curve: KeyPair | None = None) -> StatsService:
        """The service an arbiter runs when `statsd` is on: its stats_endpoint, stats_interval and zmq context, and
        the daemon's CURVE key pair when it has one."""
        return cls(arbiter, arbiter.stats_endpoint or DEFAULT_STATS_ENDPOINT, arbiter.stats_interval, arbiter.context,
                   curve)

    def start(self) -> None:
        """Bind the stats endpoint (OSError if it cannot be bound) and start sampling."""
        if self.publisher.socket is None:
            self.publisher.bind()
        self.loop.start()
        log.info("publishing stats on %s every %g s", self.endpoint, self.interval)

    def close(self) -> None:
        self.loop.stop()
        self.publisher.close()

    def _groups(self) -> dict[str, list[int]]:
        return {watcher.res_name: [p.pid for p in list(watcher.processes.values()) if p.is_alive()]
                for watcher in self.arbiter.iter_watchers()}

    def _circus_pids(self) -> dict[int, str]:
        return {os.getpid(): DAEMON_NAME}
