#!/usr/bin/env python3
"""/metrics benchmark: how long a Prometheus scrape of gcircusd takes with N processes, and what it costs the hub.

Run with the project venv:  .venv/bin/python benchmarks/run_metrics.py   (see benchmarks/README.md)

gcircusd runs N copies of ``/bin/sleep <marker>`` in one watcher with an [http] section on a free loopback port (no
token). Once all are up, `--scrapes` GET /metrics one after the other are timed end to end (request sent to last byte
read), while another thread sends a `numwatchers` control call every 10 ms: its round trip during the scrapes, next
to its round trip with no scrape, shows how long a scrape holds the hub (the collector yields every 5 ms). The daemon
is stopped and leftovers killed by pid.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from gcircus.client import CallError, Client
from harness import GCIRCUSD, RESULTS, free_endpoint, free_port, machine, percentile, stop_gcircusd, write_results


class ControlProbe(threading.Thread):
    """`numwatchers` every 10 ms on its own client; round trips in ms, tagged with whether a scrape was under way."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True)
        self.client = Client(endpoint, timeout=10, green=False)
        self.scraping = False
        self.samples: dict[bool, list[float]] = {True: [], False: []}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            during = self.scraping
            t0 = time.perf_counter()
            self.client.call("numwatchers")
            self.samples[during and self.scraping].append((time.perf_counter() - t0) * 1000)
            time.sleep(0.01)
        self.client.close()


def scrape(port: int) -> tuple[float, int]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        t0 = time.perf_counter()
        connection.request("GET", "/metrics")
        body = connection.getresponse().read()
        return (time.perf_counter() - t0) * 1000, len(body)
    finally:
        connection.close()


def start(n: int, workdir: Path, marker: str) -> tuple[subprocess.Popen, str, int]:
    endpoint, port = free_endpoint(), free_port()
    config = workdir / "metrics.ini"
    config.write_text(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = {free_endpoint()}\n\n"
                      f"[http]\nbind = 127.0.0.1:{port}\n\n"
                      f"[watcher:work]\ncmd = /bin/sleep {marker}\nnumprocesses = {n}\ngraceful_timeout = 5\n")
    with open(workdir / "gcircusd.log", "wb") as log_file:
        daemon = subprocess.Popen([*GCIRCUSD, str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    return daemon, endpoint, port


def wait_processes(daemon: subprocess.Popen, endpoint: str, n: int, workdir: Path) -> list[int]:
    client = Client(endpoint, timeout=10, green=False)
    try:
        deadline = time.monotonic() + 120
        while True:
            if daemon.poll() is not None:
                raise RuntimeError(f"gcircusd exited: {(workdir / 'gcircusd.log').read_text()[-2000:]}")
            try:
                pids = client.call("list", name="work").get("pids", [])
            except CallError:
                pids = []
            if len(pids) == n:
                return pids
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(pids)} of {n} processes after 120 s")
            time.sleep(0.2)
    finally:
        client.close()


def measure(n: int, scrapes: int, workdir: Path) -> dict:
    marker = f"37{uuid.uuid4().int % 10**6:06d}"
    daemon, endpoint, port = start(n, workdir, marker)
    pids: list[int] = []
    try:
        pids = wait_processes(daemon, endpoint, n, workdir)
        scrape(port)  # the first scrape builds the collector's per-watcher state
        probe = ControlProbe(endpoint)
        probe.start()
        time.sleep(2)  # control round trips with no scrape
        times, size = [], 0
        for _ in range(scrapes):
            probe.scraping = True
            elapsed, size = scrape(port)
            probe.scraping = False
            times.append(elapsed)
            time.sleep(0.05)
        probe.done.set()
        probe.join(30)
        quiet, during = probe.samples[False], probe.samples[True]
        return {
            "processes": n, "scrapes": scrapes, "body_bytes": size,
            "scrape_ms": {"p50": statistics.median(times), "p99": percentile(times, 99), "max": max(times)},
            "control_ms_idle": {"p50": statistics.median(quiet), "max": max(quiet), "calls": len(quiet)},
            "control_ms_during_scrapes": {"p50": statistics.median(during) if during else None,
                                          "max": max(during) if during else None, "calls": len(during)},
        }
    finally:
        stop_gcircusd(daemon, pids, marker)


def markdown(result: dict, machine_text: str) -> str:
    s, idle, during = result["scrape_ms"], result["control_ms_idle"], result["control_ms_during_scrapes"]
    return "\n".join([
        f"### Metrics benchmark ({dt.datetime.now():%Y-%m-%d %H:%M})", "",
        f"{machine_text}. gcircusd with {result['processes']} `sleep` processes in one watcher, "
        f"{result['scrapes']} scrapes of /metrics one after the other ({result['body_bytes']} bytes each).", "",
        "| | p50 (ms) | p99 (ms) | max (ms) |", "| --- | --- | --- | --- |",
        f"| GET /metrics, end to end | {s['p50']:.1f} | {s['p99']:.1f} | {s['max']:.1f} |",
        f"| `numwatchers` round trip, no scrape | {idle['p50']:.2f} | | {idle['max']:.2f} |",
        f"| `numwatchers` round trip, during scrapes | {during['p50'] or 0:.2f} | | {during['max'] or 0:.2f} |",
        "", "Goal: a scrape under 50 ms with 1000 processes.", ""])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=1000, help="processes (default 1000)")
    p.add_argument("--scrapes", type=int, default=50, help="scrapes timed (default 50)")
    p.add_argument("--out", type=Path, default=RESULTS / "metrics.md")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gcircus-metrics-bench-") as tmp:
        result = measure(args.n, args.scrapes, Path(tmp))
    print(json.dumps(result), flush=True)
    write_results(args.out, markdown(result, machine()), {"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
