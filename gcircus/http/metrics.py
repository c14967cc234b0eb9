"""/metrics: gcircusd's state in Prometheus's text format, read when Prometheus scrapes, not sampled in between.

A prometheus_client custom collector builds every family at scrape time from what gcircusd holds in memory (the
watchers' states, counts and counters, the control requests counted by gcircus.control.runner) plus, for the
resources of the supervised processes, two small /proc files and one directory listing per process (the stats
channel's cheap reads, gcircus.stats.sampler): /proc/PID/stat (CPU time), /proc/PID/statm (resident memory) and
/proc/PID/fd (open descriptors). Reading yields to the hub every few milliseconds, so a scrape of a thousand
processes never holds supervision up for long. Names follow Prometheus's conventions: a `gcircus_` prefix, base
units (seconds, bytes), `_total` for counters, a `watcher` label.

CPU seconds are a counter: the CPU time of the watcher's running processes plus, for processes that exited since, the
time last read from them (what they used between their last scrape and their exit is not seen).
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator

import gevent
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gcircus import __version__, linux
from gcircus.http.probes import hub_latency
from gcircus.http.web import Request, Response
from gcircus.procinfo import YIELD_AFTER
from gcircus.states import TRANSITIONS

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
WATCHER_STATES = tuple(TRANSITIONS)
STREAM_NAMES = ("stdout", "stderr")


def read_process(pid: int) -> tuple[float, int, int] | None:
    """(CPU seconds, resident bytes, open fds) of `pid`, None once it is gone; fds -1 when not readable."""
    try:
        stat = linux.read_stat(pid)
        rss_pages = int(linux.read_proc(pid, "statm").split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except PermissionError:
        fds = -1
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (stat.utime + stat.stime) / _TICKS, rss_pages * _PAGE, fds


class CpuLedger:
    """Keeps a watcher's CPU seconds a counter: the last reading of each process, and the sum of those that left."""

    def __init__(self):
        self.last: dict[int, float] = {}
        self.departed = 0.0

    def total(self, readings: dict[int, float]) -> float:
        for pid, seconds in self.last.items():
            if pid not in readings:
                self.departed += seconds
        self.last = readings
        return self.departed + sum(readings.values())


class Families:
    """The metric families of one scrape, filled watcher by watcher."""

    def __init__(self):
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        w = ["watcher"]
        self.processes = gauge("gcircus_watcher_processes", "Processes of the watcher running now", labels=w)
        self.desired = gauge("gcircus_watcher_processes_desired", "Processes the watcher should run (numprocesses)",
                             labels=w)
        self.ready = gauge("gcircus_watcher_processes_ready", "Running processes that passed their readiness check",
                           labels=w)
        self.state = gauge("gcircus_watcher_state", "1 for the watcher's current state, 0 for the others",
                           labels=["watcher", "state"])
        self.restarts = counter("gcircus_watcher_restarts", "Processes replaced after exiting on their own or "
                                "failing their checks", labels=w)
        self.backoffs = counter("gcircus_watcher_backoffs", "Times the watcher backed off (crash loop, failing "
                                "spawns)", labels=w)
        self.spawn_failures = counter("gcircus_watcher_spawn_failures", "Spawn attempts that failed", labels=w)
        self.last_exit = gauge("gcircus_watcher_last_exit_code", "Exit code of the last process reaped (-N: signal "
                               "N)", labels=w)
        self.cpu = counter("gcircus_watcher_cpu_seconds", "CPU time (user+system) of the watcher's processes",
                           labels=w)
        self.rss = gauge("gcircus_watcher_resident_memory_bytes", "Resident memory of the running processes",
                         labels=w)
        self.fds = gauge("gcircus_watcher_open_fds", "Open file descriptors of the running processes", labels=w)
        sw = ["watcher", "stream"]
        self.stream_bytes = counter("gcircus_watcher_stream_bytes", "Output bytes written to the stream's sinks",
                                    labels=sw)
        self.stream_lines = counter("gcircus_watcher_stream_lines", "Output lines written to the stream's sinks",
                                    labels=sw)
        self.stream_failures = counter("gcircus_watcher_stream_sink_failures", "Sink calls that failed (each retry "
                                       "counts)", labels=sw)
        self.readiness = SummaryMetricFamily("gcircus_watcher_readiness_seconds", "Time from spawn to ready of the "
                                             "processes that became ready", labels=w)
        self.last_readiness = gauge("gcircus_watcher_last_readiness_seconds", "Time from spawn to ready of the last "
                                    "process that became ready", labels=w)

    def __iter__(self) -> Iterator:
        return iter(vars(self).values())


class GcircusCollector:
    """The custom collector: every gcircus_ family, built from the arbiter's state when collect() is called."""

    def __init__(self, arbiter, counts, started_at: float | None = None):
        self.arbiter, self.counts = arbiter, counts
        self.started_at = time.time() if started_at is None else started_at
        self.ledgers: dict[str, CpuLedger] = {}

    def collect(self) -> Iterator:
        families = Families()
        since = time.monotonic()
        watchers = list(self.arbiter.iter_watchers(reverse=False))
        for watcher in watchers:
            since = self._add_watcher(families, watcher, since)
        self.ledgers = {w.name: self.ledgers[w.name] for w in watchers if w.name in self.ledgers}
        yield from families
        yield from self._daemon()

    def _add_watcher(self, families: Families, watcher, since: float) -> float:
        name, counters = watcher.name, watcher.counters
        processes = list(watcher.processes.values())
        families.processes.add_metric([name], len(processes))
        families.desired.add_metric([name], watcher.numprocesses)
        families.ready.add_metric([name], sum(p.state == "ready" for p in processes))
        for state in WATCHER_STATES:
            families.state.add_metric([name, state], 1.0 if watcher.status() == state else 0.0)
        families.restarts.add_metric([name], counters.restarts)
        families.backoffs.add_metric([name], counters.backoffs)
        families.spawn_failures.add_metric([name], counters.spawn_failures)
        if counters.last_exit_code is not None:
            families.last_exit.add_metric([name], counters.last_exit_code)
        families.readiness.add_metric([name], counters.ready_count, counters.ready_seconds)
        if counters.last_ready_seconds is not None:
            families.last_readiness.add_metric([name], counters.last_ready_seconds)
        for stream in STREAM_NAMES:
            stream_counters = watcher.outputs.counters[stream]
            families.stream_bytes.add_metric([name, stream], stream_counters.bytes)
            families.stream_lines.add_metric([name, stream], stream_counters.lines)
            families.stream_failures.add_metric([name, stream], stream_counters.failures)
        cpu: dict[int, float] = {}
        rss = fds = 0
        for process in processes:
            read = read_process(process.pid)
            if read is not None:
                cpu[process.pid], rss, fds = read[0], rss + read[1], fds + max(read[2], 0)
            if time.monotonic() - since > YIELD_AFTER:
                gevent.sleep(0.0001)  # a timed sleep: the hub polls for I/O and runs due timers before we resume
                since = time.monotonic()
        families.cpu.add_metric([name], self.ledgers.setdefault(name, CpuLedger()).total(cpu))
        families.rss.add_metric([name], rss)
        families.fds.add_metric([name], fds)
        return since

    def _daemon(self) -> Iterator:
        latency = GaugeMetricFamily("gcircus_hub_latency_seconds", "How late a short timer fires on gcircusd's hub")
        latency.add_metric([], hub_latency())
        requests = CounterMetricFamily("gcircus_control_requests", "Control requests answered (zmq and /api), by "
                                       "command and outcome", labels=["command", "outcome"])
        for (command, outcome), count in sorted(self.counts.counts.items()):
            requests.add_metric([command, outcome], count)
        uptime = GaugeMetricFamily("gcircus_uptime_seconds", "Seconds since gcircusd's HTTP server started")
        uptime.add_metric([], time.time() - self.started_at)
        start = GaugeMetricFamily("gcircus_start_time_seconds", "When gcircusd's HTTP server started (Unix time)")
        start.add_metric([], self.started_at)
        build = GaugeMetricFamily("gcircus_build_info", "gcircus's version (the value is always 1)",
                                  labels=["version"])
        build.add_metric([__version__], 1)
        watchers = GaugeMetricFamily("gcircus_watchers", "Watchers gcircusd supervises")
        watchers.add_metric([], self.arbiter.numwatchers())
        return iter((latency, requests, uptime, start, build, watchers))


def registry_for(arbiter, counts, started_at: float | None = None) -> CollectorRegistry:
    """A registry holding gcircus's collector and the process collector of gcircusd itself (process_*)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GcircusCollector(arbiter, counts, started_at))
    ProcessCollector(registry=registry)
    return registry


def metrics(app, request: Request) -> Response:
    return Response(200, generate_latest(app.registry), CONTENT_TYPE_LATEST)
