#!/usr/bin/env python3
"""Soak benchmark: does gcircusd's memory stay flat while it respawns processes by the thousand?

Run with the project venv:  .venv/bin/python benchmarks/run_soak.py [--spawns N] [--processes P]
(results in benchmarks/README.md)

A gcircusd daemon runs one watcher of P processes that each print a line and exit after 1.1 s (just past the
crash-loop pacing, so they are replaced at once), with and without a FileStream on stdout. Every 1000 spawns
(counted from the `spawn` events) the daemon's RSS and the resident size of its C heap ([heap] in smaps) are
printed; the growth between the first and the last sample is the leak per 1000 spawns.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gevent

from gcircus.client import Client, NoDaemonError
from gcircus.consumer import Consumer
from harness import GCIRCUSD, REPO, free_endpoint, rss_kib


def memory(pid: int) -> tuple[int, int]:
    """(RSS, resident [heap]) of `pid`, in KiB."""
    heap = 0
    in_heap = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if not fields[0].endswith(":"):
                in_heap = fields[-1] == "[heap]"
            elif in_heap and fields[0] == "Rss:":
                heap += int(fields[1])
    return rss_kib(pid), heap


def soak(workdir: Path, stream: bool, spawns: int, processes: int) -> list[tuple[int, float, int, int]]:
    endpoint, pubsub = free_endpoint(), free_endpoint()
    config = workdir / f"soak-{'stream' if stream else 'plain'}.ini"
    text = (f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = {pubsub}\n\n[watcher:soak]\n"
            f"cmd = sh -c 'echo spawned; exec sleep 1.1'\nnumprocesses = {processes}\ncheck_flapping = false\n")
    if stream:
        text += f"stdout_stream.class = FileStream\nstdout_stream.filename = {workdir}/soak.log\n"
    config.write_text(text)
    with open(workdir / "gcircusd.out", "ab") as out:
        daemon = subprocess.Popen([*GCIRCUSD, str(config)], cwd=REPO,
                                  stdout=out, stderr=subprocess.STDOUT)
    samples = []
    try:
        client = Client(endpoint, timeout=10, green=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.call("status")
                break
            except NoDaemonError:
                if time.monotonic() > deadline:
                    raise
                gevent.sleep(0.1)
        count = [0]
        consumer = Consumer([b"watcher.soak.spawn"], endpoint=pubsub, timeout=0.2, green=True)
        listener = gevent.spawn(lambda: [count.__setitem__(0, count[0] + 1) for _ in consumer])
        start = time.monotonic()
        next_sample = 1000
        while count[0] < spawns:
            gevent.sleep(0.2)
            if count[0] >= next_sample:
                rss, heap = memory(daemon.pid)
                samples.append((count[0], time.monotonic() - start, rss, heap))
                print(f"  {'stream' if stream else 'plain '} {count[0]:6d} spawns {samples[-1][1]:6.0f} s  "
                      f"RSS {rss} KiB  heap {heap} KiB", flush=True)
                next_sample += 1000
        consumer.stop()
        listener.kill()
        client.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    return samples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=60)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for stream in (False, True):
            samples = soak(Path(tmp), stream, args.spawns, args.processes)
            (n0, t0, rss0, heap0), (n1, t1, rss1, heap1) = samples[0], samples[-1]
            per = 1000 / (n1 - n0)
            print(f"{'with' if stream else 'without'} a FileStream: {n1 - n0} spawns in {t1 - t0:.0f} s "
                  f"({(n1 - n0) / (t1 - t0):.0f}/s); RSS {(rss1 - rss0) * per:+.0f} KiB, "
                  f"heap {(heap1 - heap0) * per:+.0f} KiB per 1000 spawns", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
