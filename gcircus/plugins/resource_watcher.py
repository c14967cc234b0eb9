"""ResourceWatcher: restart a watcher (or signal one of its processes' children) whose CPU or memory use stays out
of bounds for more than max_count consecutive rounds."""
from __future__ import annotations

import logging
import signal

from gcircus.options import to_bool, to_signal, to_size
from gcircus.plugins.statsd import PeriodicEmitter, sample

log = logging.getLogger(__name__)

PARENT = "parent"


def _memory_limit(value: str) -> tuple[float, bool]:
    """'90' or '90.5' -> (90.0, percent); '512M', '1G', '100000b' -> (bytes, absolute)."""
    try:
        return float(value), True
    except ValueError:
        return float(to_size(value)), False


class ResourceWatcher(PeriodicEmitter):
    """Options: watcher (required; `service` is an old alias), loop_rate (60), max_cpu (90), min_cpu, max_mem (90:
    a percentage, or bytes when it has a unit), min_mem (same), health_threshold (75), max_count (3),
    process_children (false), child_signal (SIGTERM), plus the statsd options."""

    name = "resource_watcher"

    def __init__(self, arbiter, plugin_name: str = "", **config):
        super().__init__(arbiter, plugin_name, **config)
        self.watcher = self.option("watcher") or self.option("service")
        if not self.watcher:
            raise ValueError(f"{self.plugin_name}: the 'watcher' option is required")
        self.max_cpu = self.option("max_cpu", 90.0, float)
        self.min_cpu = self.option("min_cpu", None, float)
        self.max_mem, self.max_mem_percent = self.option("max_mem", (90.0, True), _memory_limit)
        self.min_mem, self.min_mem_percent = self.option("min_mem", (None, True), _memory_limit)
        self.health_threshold = self.option("health_threshold", 75.0, float)
        self.max_count = self.option("max_count", 3, int)
        self.process_children = self.option("process_children", False, to_bool)
        self.child_signal = self.option("child_signal", signal.SIGTERM, to_signal)
        self.counters: dict = {}

    def _bump(self, key: str, index, violated: bool) -> int:
        counts = self.counters.setdefault(index, {})
        if violated:
            counts[key] = counts.get(key, 0) + 1
            self.statsd.increment(f"_resource_watcher.{self.watcher}.{key}")
        else:
            counts[key] = 0
        return counts[key]

    def _check(self, index, samples: list) -> bool:
        """Update the counters of `index` with `samples`; True when one of them went over max_count."""
        if samples:
            cpus, pcts, rsses = zip(*samples)
        else:
            cpus = pcts = rsses = (0,)
        highest = [
            self._bump("over_cpu", index, bool(self.max_cpu) and max(cpus) > self.max_cpu),
            self._bump("under_cpu", index, self.min_cpu is not None and min(cpus) <= self.min_cpu),
            self._bump("over_memory", index, self.max_mem is not None and (
                max(pcts) > self.max_mem if self.max_mem_percent else max(rsses) > self.max_mem)),
            self._bump("under_memory", index, self.min_mem is not None and (
                min(pcts) < self.min_mem if self.min_mem_percent else min(rsses) < self.min_mem)),
            self._bump("over_health", index, bool(self.health_threshold)
                       and (max(cpus) + max(pcts)) / 2.0 > self.health_threshold),
        ]
        return max(highest) > self.max_count

    def look_after(self) -> None:
        watcher = self.watcher_for(self.watcher)
        if watcher is None:
            self.statsd.increment(f"_resource_watcher.{self.watcher}.error")
            log.warning("%s: no watcher named %r", self.plugin_name, self.watcher)
            return
        processes = list(watcher.processes.values())
        parent_samples = [s for s in (sample(p.pid) for p in processes) if s is not None]
        if self._check(PARENT, parent_samples):
            self.statsd.increment(f"_resource_watcher.{self.watcher}.restarting")
            log.warning("%s: %s is out of its resource limits: restarting it", self.plugin_name, watcher.name)
            self.counters.pop(PARENT, None)
            watcher.restart()
            return
        if not self.process_children:
            return
        seen = {PARENT}
        for process in processes:
            for child_pid in process.children():
                seen.add(child_pid)
                child_sample = sample(child_pid)
                if child_sample is None:
                    continue
                if self._check(child_pid, [child_sample]):
                    self.statsd.increment(f"_resource_watcher.{self.watcher}.restarting")
                    log.warning("%s: child %d of %s (pid %d) is out of its resource limits: sending signal %d",
                                self.plugin_name, child_pid, watcher.name, process.pid, self.child_signal)
                    self.counters.pop(child_pid, None)
                    watcher.send_signal_child(process.pid, child_pid, self.child_signal)
        self.counters = {index: counts for index, counts in self.counters.items() if index in seen}
