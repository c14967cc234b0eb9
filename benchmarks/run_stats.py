#!/usr/bin/env python3
"""Stats-channel benchmark: what sampling N processes once a second costs gcircusd.

Run with the project venv:  .venv/bin/python benchmarks/run_stats.py   (see benchmarks/README.md)

For each mode (statsd off, statsd on), start gcircusd on an ini running N copies of ``/bin/sleep <marker>``, wait
until all are up and a few seconds more, then over `--seconds`:
* the daemon's CPU time (user + system, from /proc) as a percentage of one core;
* with stats on, every message of the stats channel, read by a subscriber (so the cost includes publishing to one
  live subscriber), and the daemon's own per-sample log line: sample duration and longest hub pause;
* the round trip of a `numwatchers` control call every 20 ms (what a hub pause would delay).
The difference between the two modes' CPU is the cost of the stats. Daemons are stopped and leftovers killed by pid.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import zmq

from gcircus.client import CallError, Client
from harness import GCIRCUSD, RESULTS, free_endpoint, machine, percentile, stop_gcircusd, write_results

SAMPLE_LINE = re.compile(rb"stats sample: (\d+) processes in ([\d.]+) ms \(longest hub pause ([\d.]+) ms")


def run_mode(n: int, statsd: bool, seconds: float, interval: float, workdir: Path) -> dict:
    marker = f"36{uuid.uuid4().int % 10**6:06d}"
    endpoints = {k: free_endpoint() for k in ("endpoint", "pubsub_endpoint", "stats_endpoint")}
    config = workdir / f"stats-{'on' if statsd else 'off'}.ini"
    lines = [f"{k} = {v}" for k, v in endpoints.items()]
    config.write_text("[circus]\n" + "\n".join(lines) + f"\nstatsd = {str(statsd).lower()}\n"
                      f"stats_interval = {interval}\n\n[watcher:work]\ncmd = /bin/sleep {marker}\n"
                      f"numprocesses = {n}\ngraceful_timeout = 5\n")
    log_path = workdir / f"gcircusd-{'on' if statsd else 'off'}.log"
    with open(log_path, "wb") as log_file:
        daemon = subprocess.Popen([*GCIRCUSD, "--log-level", "debug", str(config)], stdout=log_file,
                                  stderr=subprocess.STDOUT)
    client = Client(endpoints["endpoint"], timeout=10, green=False)
    children: list[int] = []
    sub = None
    try:
        deadline = time.monotonic() + 120
        while True:
            if daemon.poll() is not None:
                raise RuntimeError(f"gcircusd exited: {log_path.read_text()[-2000:]}")
            try:
                children = client.call("list", name="work").get("pids", [])
            except CallError:
                children = []
            if len(children) == n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(children)} of {n} processes after 120 s")
            time.sleep(0.2)
        if statsd:
            sub = zmq.Context.instance().socket(zmq.SUB)
            sub.linger = 0
            sub.setsockopt(zmq.SUBSCRIBE, b"stat.")
            sub.rcvhwm = 0
            sub.connect(endpoints["stats_endpoint"])
        time.sleep(3)  # settle: startup work done, first samples taken
        while sub is not None and sub.poll(0):  # count only what the window publishes
            sub.recv_multipart()
        log_offset = log_path.stat().st_size
        proc = psutil.Process(daemon.pid)
        start_cpu = sum(proc.cpu_times()[:2])
        start = time.monotonic()
        latencies: list[float] = []
        messages = 0
        while time.monotonic() - start < seconds:
            t0 = time.perf_counter()
            client.call("numwatchers")
            latencies.append((time.perf_counter() - t0) * 1000)
            if sub is not None:
                while sub.poll(0):
                    sub.recv_multipart()
                    messages += 1
            time.sleep(0.02)
        elapsed = time.monotonic() - start
        cpu = sum(proc.cpu_times()[:2]) - start_cpu
        with open(log_path, "rb") as f:
            f.seek(log_offset)
            samples = [tuple(float(x) for x in m.groups()) for m in SAMPLE_LINE.finditer(f.read())]
        result = {
            "statsd": statsd, "processes": n, "interval": interval, "seconds": round(elapsed, 2),
            "daemon_cpu_percent": round(cpu / elapsed * 100, 2),
            "control_ms": {"p50": round(statistics.median(latencies), 3), "p99": round(percentile(latencies, 99), 3),
                           "max": round(max(latencies), 3), "calls": len(latencies)},
        }
        if statsd:
            durations = [s[1] for s in samples]
            pauses = [s[2] for s in samples]
            result.update({
                "messages_per_second": round(messages / elapsed, 1),
                "samples": len(samples),
                "processes_per_sample": int(samples[-1][0]) if samples else 0,
                "sample_ms": {"median": statistics.median(durations), "max": max(durations)} if samples else None,
                "hub_pause_ms": {"median": statistics.median(pauses), "max": max(pauses)} if samples else None,
            })
        return result
    finally:
        if sub is not None:
            sub.close()
        client.close()
        stop_gcircusd(daemon, children, marker)


def markdown(results: list[dict], machine: str) -> str:
    off = next(r for r in results if not r["statsd"])
    on = next(r for r in results if r["statsd"])
    cost = on["daemon_cpu_percent"] - off["daemon_cpu_percent"]
    lines = [
        f"### Stats benchmark ({dt.datetime.now():%Y-%m-%d %H:%M})", "",
        f"{machine}. gcircusd with {on['processes']} `sleep` processes, stats every {on['interval']} s, one "
        f"subscriber reading every message, {on['seconds']:.0f} s per mode.", "",
        "| statsd | daemon CPU (% of one core) | control p50 / p99 / max (ms) |",
        "| --- | --- | --- |",
    ]
    for r in (off, on):
        c = r["control_ms"]
        lines.append(f"| {'on' if r['statsd'] else 'off'} | {r['daemon_cpu_percent']:.2f} | "
                     f"{c['p50']:.2f} / {c['p99']:.2f} / {c['max']:.2f} |")
    lines += ["", f"Cost of the stats: **{cost:.2f}% of one core** for {on['processes_per_sample']} processes "
              f"sampled per tick ({on['samples']} samples, {on['messages_per_second']:.0f} messages/s received)."]
    if on.get("sample_ms"):
        lines.append(f"Per sample: median {on['sample_ms']['median']:.1f} ms, max {on['sample_ms']['max']:.1f} ms; "
                     f"longest hub pause median {on['hub_pause_ms']['median']:.2f} ms, "
                     f"max {on['hub_pause_ms']['max']:.2f} ms.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=1000, help="processes (default 1000)")
    p.add_argument("--seconds", type=float, default=20.0, help="measurement window per mode (default 20)")
    p.add_argument("--interval", type=float, default=1.0, help="stats_interval (default 1.0)")
    p.add_argument("--out", type=Path, default=RESULTS / "stats.md")
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="gcircus-stats-bench-") as tmp:
        for statsd in (False, True):
            result = run_mode(args.n, statsd, args.seconds, args.interval, Path(tmp))
            print(json.dumps(result), flush=True)
            results.append(result)
    write_results(args.out, markdown(results, machine()), {"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
