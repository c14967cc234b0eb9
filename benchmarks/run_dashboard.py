#!/usr/bin/env python3
"""Dashboard benchmark: what open dashboard pages cost gcircusd with 1000 processes (goal: under 1% of one core).

Run with the project venv:  .venv/bin/python benchmarks/run_dashboard.py   (see benchmarks/README.md)

gcircusd runs `--watchers` watchers of ``/bin/sleep <marker>`` (`-n` processes in all) with its HTTP server on. For
each mode (no page open, `--pages` pages open), once every process is up and a few seconds more, over `--seconds`:
* the daemon's CPU time (user + system, from /proc) as a percentage of one core;
* with pages, each page is a real event stream (/dashboard/events) read to the end by a thread of this script, as a
  browser's EventSource would: the messages and bytes each received (snapshot, usage samples, events);
* the round trip of an HTTP `GET /api/numwatchers` every 200 ms (what a hub pause would delay).
The difference between the two modes' CPU is the dashboard's cost. Daemons are stopped and leftovers killed by pid.
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

import psutil

from gcircus.client import CallError, Client
from harness import GCIRCUSD, RESULTS, free_endpoint, free_port, machine, percentile, stop_gcircusd, write_results


class Page(threading.Thread):
    """One open dashboard: reads /dashboard/events until told to stop, counting messages and bytes."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.messages: dict[str, int] = {}
        self.bytes = 0
        self.error: str | None = None
        self.stopped = False
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def run(self) -> None:
        try:
            self.connection.request("GET", "/dashboard/events")
            response = self.connection.getresponse()
            if response.status != 200:
                self.error = f"HTTP {response.status}"
                return
            while True:
                line = response.fp.readline()
                if not line:
                    return
                self.bytes += len(line)
                if line.startswith(b"event: "):
                    name = line[7:].strip().decode()
                    self.messages[name] = self.messages.get(name, 0) + 1
        except (OSError, ValueError, AttributeError) as exc:  # closed by stop() (http.client then has no file left)
            if not self.stopped:
                self.error = self.error or str(exc)

    def stop(self) -> None:
        self.stopped = True
        self.connection.close()


def start_daemon(n: int, watchers: int, marker: str, workdir: Path, name: str):
    endpoint, port = free_endpoint(), free_port()
    per = [n // watchers + (1 if i < n % watchers else 0) for i in range(watchers)]
    sections = "".join(f"\n[watcher:work{i}]\ncmd = /bin/sleep {marker}\nnumprocesses = {count}\n"
                       f"graceful_timeout = 5\n" for i, count in enumerate(per))
    config = workdir / f"{name}.ini"
    config.write_text(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = {free_endpoint()}\n\n"
                      f"[http]\nbind = 127.0.0.1:{port}\nmax_connections = 32\n{sections}")
    log_path = workdir / f"gcircusd-{name}.log"
    with open(log_path, "wb") as log_file:
        daemon = subprocess.Popen([*GCIRCUSD, str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    return daemon, Client(endpoint, timeout=10, green=False), port, log_path


def wait_all_up(daemon, client: Client, n: int, log_path: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        if daemon.poll() is not None:
            raise RuntimeError(f"gcircusd exited: {log_path.read_text()[-2000:]}")
        try:
            if client.call("numprocesses").get("numprocesses") == n and "gcircusd running" in log_path.read_text():
                return
        except CallError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all {n} processes up after 180 s")
        time.sleep(0.3)


def api_round_trip(port: int) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        t0 = time.perf_counter()
        connection.request("GET", "/api/numwatchers")
        connection.getresponse().read()
        return (time.perf_counter() - t0) * 1000
    finally:
        connection.close()


def run_mode(n: int, watchers: int, pages: int, seconds: float, workdir: Path) -> dict:
    marker = f"37{uuid.uuid4().int % 10**6:06d}"
    daemon, client, port, log_path = start_daemon(n, watchers, marker, workdir, f"pages-{pages}")
    readers: list[Page] = []
    try:
        wait_all_up(daemon, client, n, log_path)
        readers = [Page(port) for _ in range(pages)]
        for reader in readers:
            reader.start()
        time.sleep(8)  # settle: the snapshots sent, the first usage samples taken
        proc = psutil.Process(daemon.pid)
        start_cpu, start = sum(proc.cpu_times()[:2]), time.monotonic()
        before = [(dict(r.messages), r.bytes) for r in readers]
        latencies: list[float] = []
        while time.monotonic() - start < seconds:
            latencies.append(api_round_trip(port))
            time.sleep(0.2)
        elapsed = time.monotonic() - start
        cpu = sum(proc.cpu_times()[:2]) - start_cpu
        received = [{"usage": r.messages.get("usage", 0) - b[0].get("usage", 0), "bytes": r.bytes - b[1],
                     "error": r.error} for r, b in zip(readers, before)]
        return {"pages": pages, "processes": n, "watchers": watchers, "seconds": round(elapsed, 2),
                "daemon_cpu_percent": round(cpu / elapsed * 100, 3),
                "api_ms": {"p50": round(statistics.median(latencies), 3), "p99": round(percentile(latencies, 99), 3),
                           "max": round(max(latencies), 3), "calls": len(latencies)},
                "received": received}
    finally:
        for reader in readers:
            reader.stop()
        children = [p.pid for p in psutil.Process(daemon.pid).children()] if daemon.poll() is None else []
        client.close()
        stop_gcircusd(daemon, children, marker)


def markdown(results: list[dict], machine_text: str) -> str:
    off, on = results
    cost = on["daemon_cpu_percent"] - off["daemon_cpu_percent"]
    usage = [r["usage"] for r in on["received"]]
    kib = sum(r["bytes"] for r in on["received"]) / len(on["received"]) / 1024 / on["seconds"]
    lines = [
        f"### Dashboard benchmark ({dt.datetime.now():%Y-%m-%d %H:%M})", "",
        f"{machine_text}. gcircusd with {on['processes']} `sleep` processes in {on['watchers']} watchers, "
        f"{on['seconds']:.0f} s per mode; each page is a live event stream read to the end.", "",
        "| open pages | daemon CPU (% of one core) | HTTP API p50 / p99 / max (ms) |",
        "| --- | --- | --- |",
    ]
    for r in (off, on):
        a = r["api_ms"]
        lines.append(f"| {r['pages']} | {r['daemon_cpu_percent']:.2f} | {a['p50']:.2f} / {a['p99']:.2f} / "
                     f"{a['max']:.2f} |")
    lines += ["", f"Cost of {on['pages']} open pages: **{cost:.2f}% of one core** (goal: under 1%). Each page "
              f"received {min(usage)}-{max(usage)} usage samples ({kib:.1f} KiB/s)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=1000, help="processes (default 1000)")
    p.add_argument("--watchers", type=int, default=10, help="watchers sharing them (default 10)")
    p.add_argument("--pages", type=int, default=5, help="open pages in the second mode (default 5)")
    p.add_argument("--seconds", type=float, default=60.0, help="measurement window per mode (default 60)")
    p.add_argument("--out", type=Path, default=RESULTS / "dashboard.md")
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="gcircus-dashboard-bench-") as tmp:
        for pages in (0, args.pages):
            result = run_mode(args.n, args.watchers, pages, args.seconds, Path(tmp))
            print(json.dumps(result), flush=True)
            results.append(result)
    write_results(args.out, markdown(results, machine()), {"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
