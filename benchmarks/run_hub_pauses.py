#!/usr/bin/env python3
"""Hub-pause benchmark: how long reading many processes holds gcircus's gevent hub, in one process.

Run with the project venv:  .venv/bin/python benchmarks/run_hub_pauses.py   (see benchmarks/README.md)

The tests only check that these reads yield to the hub (another greenlet runs meanwhile): how long each stretch
without yielding lasts depends on the machine and its load, so it is measured here instead. For N copies of
``/bin/sleep <marker>`` under an embedded arbiter, with a ticker greenlet asking to run every 1 ms:
* the ``stats NAME`` control command (gcircus.procinfo): reply time, and the longest gap between two ticks while
  the reply was being built;
* one sample of the stats channel (gcircus.stats.channel.StatsLoop.sample_once over the same pids): its duration,
  the longest pause it reports itself, and the longest tick gap.
Each is repeated `--rounds` times. The arbiter stops every process it started; leftovers are killed by pid.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time

import gevent

from gcircus import get_arbiter
from gcircus.client import Client
from gcircus.stats.channel import StatsLoop, StatsPublisher
from harness import free_endpoint


class Ticker:
    """A greenlet that wants to run every millisecond; `longest_gap(a, b)` is the longest it waited within [a, b]."""

    def __init__(self):
        self.ticks: list[float] = []
        self._greenlet = gevent.spawn(self._run)

    def _run(self):
        while True:
            self.ticks.append(time.monotonic())
            gevent.sleep(0.001)

    def longest_gap(self, start: float, end: float) -> float:
        inside = [t for t in self.ticks if start <= t <= end]
        edges = [start] + inside + [end]
        return max(b - a for a, b in zip(edges, edges[1:]))

    def stop(self):
        self._greenlet.kill()


class Unsent(StatsPublisher):
    """The stats channel's publisher without a socket: the benchmark times sampling, not zmq."""

    def publish(self, topic, payload):
        pass


def measure(n: int, rounds: int) -> dict:
    marker = f"37{os.getpid() % 10**6:06d}"
    endpoint = free_endpoint()
    arbiter = get_arbiter([{"name": "work", "cmd": f"/bin/sleep {marker}", "numprocesses": n,
                            "graceful_timeout": 5}], controller=endpoint)
    pids: list[int] = []
    arbiter.start(background=True)
    try:
        pids = list(arbiter.get_watcher("work").pids)
        client = Client(endpoint, timeout=60, green=True)
        loop = StatsLoop(Unsent("ipc:///unused"), lambda: {"work": pids}, dict)
        ticker = Ticker()
        command, sample = [], []
        try:
            client.call("stats", name="work")  # warm the caches, as a second call of an operator would be
            loop.sample_once()
            for _ in range(rounds):
                gevent.sleep(0.05)
                start = time.monotonic()
                client.call("stats", name="work")
                end = time.monotonic()
                command.append({"ms": (end - start) * 1000, "gap_ms": ticker.longest_gap(start, end) * 1000})
                gevent.sleep(0.05)
                start = time.monotonic()
                loop.sample_once()
                end = time.monotonic()
                sample.append({"ms": (end - start) * 1000, "gap_ms": ticker.longest_gap(start, end) * 1000,
                               "reported_ms": loop.timing.longest_pause * 1000})
        finally:
            ticker.stop()
            client.close()
    finally:
        arbiter.stop()
        for pid in pids:  # normally gone already: only our own marker is killed
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[1:2] == [marker.encode()]:
                        os.kill(pid, signal.SIGKILL)
            except (OSError, IndexError):
                pass

    def summary(rows, key):
        values = [r[key] for r in rows]
        return {"median": statistics.median(values), "max": max(values)}
    return {"processes": n, "rounds": rounds,
            "stats_command": {k: summary(command, k) for k in ("ms", "gap_ms")},
            "stats_sample": {k: summary(sample, k) for k in ("ms", "gap_ms", "reported_ms")}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, nargs="+", default=[300, 1000], help="process counts (default 300 1000)")
    p.add_argument("--rounds", type=int, default=10, help="measurements per count (default 10)")
    args = p.parse_args(argv)
    print("| processes | what | duration median / max (ms) | longest hub pause median / max (ms) |")
    print("| --- | --- | --- | --- |")
    for n in args.n:
        result = measure(n, args.rounds)
        print(json.dumps(result), file=sys.stderr, flush=True)
        c, s = result["stats_command"], result["stats_sample"]
        print(f"| {n} | `stats work` command | {c['ms']['median']:.1f} / {c['ms']['max']:.1f} | "
              f"{c['gap_ms']['median']:.2f} / {c['gap_ms']['max']:.2f} |")
        print(f"| {n} | stats channel sample | {s['ms']['median']:.1f} / {s['ms']['max']:.1f} | "
              f"{s['gap_ms']['median']:.2f} / {s['gap_ms']['max']:.2f} "
              f"(self-reported {s['reported_ms']['median']:.2f} / {s['reported_ms']['max']:.2f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
