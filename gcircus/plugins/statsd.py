"""StatsdEmitter (a counter per watcher event) and FullStats (periodic CPU/memory gauges per watcher), over UDP."""
from __future__ import annotations

import logging
import random

import psutil
from gevent import socket as gsocket

from gcircus import procinfo
from gcircus.events import Event, res_name
from gcircus.plugins.base import NativePlugin

log = logging.getLogger(__name__)


class StatsdClient:
    """A fire-and-forget statsd sender on a gevent UDP socket; `sample_rate` < 1 sends that fraction of counts."""

    def __init__(self, host: str = "localhost", port: int = 8125, prefix: str = "", sample_rate: float = 1.0,
                 rng: random.Random | None = None):
        self.prefix = prefix
        self.sample_rate = float(sample_rate)
        self._random = rng or random.Random()
        infos = gsocket.getaddrinfo(host, port, 0, gsocket.SOCK_DGRAM)
        # statsd daemons usually listen on IPv4 only, while "localhost" may resolve to ::1 first.
        family, _, _, _, address = next((i for i in infos if i[0] == gsocket.AF_INET), infos[0])
        self.address = address
        self.socket = gsocket.socket(family, gsocket.SOCK_DGRAM)

    def send(self, bucket: str, value: str, sampled: bool = False) -> None:
        if sampled and self.sample_rate < 1:
            if self._random.random() >= self.sample_rate:
                return
            value = f"{value}|@{self.sample_rate:g}"
        if self.prefix:
            bucket = f"{self.prefix}.{bucket}"
        try:
            self.socket.sendto(f"{bucket}:{value}".encode(), self.address)
        except OSError as exc:  # statsd down or unreachable: metrics are best effort
            log.debug("statsd send to %s failed: %s", self.address, exc)

    def increment(self, bucket: str, delta: int = 1) -> None:
        self.send(bucket, f"{delta}|c", sampled=True)

    def gauge(self, bucket: str, value) -> None:
        self.send(bucket, f"{value}|g")

    def timed(self, bucket: str, milliseconds) -> None:
        self.send(bucket, f"{milliseconds}|ms")

    def close(self) -> None:
        self.socket.close()


class StatsdEmitter(NativePlugin):
    """`circus.<application_name>.watcher.<watcher>.<event>:1|c` for every event (options host, port, sample_rate,
    application_name)."""

    name = "statsd"
    default_app_name = "app"

    def __init__(self, arbiter, plugin_name: str = "", **config):
        super().__init__(arbiter, plugin_name, **config)
        self.app = self.option("application_name", self.default_app_name)
        self.host = self.option("host", "localhost")
        self.port = self.option("port", 8125, int)
        self.sample_rate = self.option("sample_rate", 1.0, float)
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"{self.plugin_name}: sample_rate must be in (0, 1], not {self.sample_rate}")
        self.statsd: StatsdClient | None = None

    def handle_init(self) -> None:
        self.statsd = StatsdClient(self.host, self.port, f"circus.{self.app}.watcher", self.sample_rate)

    def handle_stop(self) -> None:
        if self.statsd is not None:
            self.statsd.close()
            self.statsd = None

    def handle_event(self, event: Event) -> None:
        self.statsd.increment(f"{res_name(event.watcher)}.{event.name}")


def sample(pid: int) -> tuple[float, float, int] | None:
    """(cpu %, memory %, rss bytes) of `pid`, cpu measured since the previous sample; None if it is gone."""
    try:
        proc = procinfo.tracked(pid)
        with proc.oneshot():
            cpu = proc.cpu_percent(None)
            rss = proc.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return cpu, rss * 100.0 / psutil.virtual_memory().total, rss


class PeriodicEmitter(StatsdEmitter):
    """A StatsdEmitter that works on a timer (loop_rate seconds, 60 by default) instead of on events."""

    default_loop_rate = 60.0

    def __init__(self, arbiter, plugin_name: str = "", **config):
        super().__init__(arbiter, plugin_name, **config)
        self.loop_rate = self.option("loop_rate", self.default_loop_rate, float)
        if self.loop_rate <= 0:
            raise ValueError(f"{self.plugin_name}: loop_rate must be positive")

    def handle_event(self, event: Event) -> None:
        pass


class FullStats(PeriodicEmitter):
    """Every loop_rate seconds, gauges `_stats.<watcher>.{watchers_num,cpu_max,cpu_sum,mem_pct_max,mem_pct_sum,
    mem_max,mem_sum}` for each watcher (external plugin watchers skipped)."""

    name = "full_stats"

    def look_after(self) -> None:
        for watcher in self.supervised_watchers():
            samples = [s for s in (sample(pid) for pid in list(watcher.processes)) if s is not None]
            base = f"_stats.{watcher.res_name}"
            self.statsd.gauge(f"{base}.watchers_num", len(samples))
            if not samples:
                continue
            cpus, pcts, rsses = zip(*samples)
            self.statsd.gauge(f"{base}.cpu_max", max(cpus))
            self.statsd.gauge(f"{base}.cpu_sum", sum(cpus))
            self.statsd.gauge(f"{base}.mem_pct_max", round(max(pcts), 3))
            self.statsd.gauge(f"{base}.mem_pct_sum", round(sum(pcts), 3))
            self.statsd.gauge(f"{base}.mem_max", max(rsses))
            self.statsd.gauge(f"{base}.mem_sum", sum(rsses))
