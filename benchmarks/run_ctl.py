#!/usr/bin/env python3
"""Command-line client benchmark: gcircusctl vs circusctl (Circus 0.19), start-up and a `status` round trip.

Run with the project venv:  .venv/bin/python benchmarks/run_ctl.py [--reps 30]

Every sample is the wall time of a whole client process, as an operator (or a script) runs it:
* start-up: `--version` and `--help`, no daemon involved;
* `status`: the full process run against a running daemon. One gcircusd is started from a temp ini on free
  127.0.0.1 ports and both clients ask it; a circusd started from the same ini (other ports) is asked by circusctl
  too, for Circus's own pair.
The clients' runs are interleaved, so a load change on the machine hits both columns alike. Median and minimum of
`--reps` runs per cell. Both daemons are stopped, and their children killed, on errors and Ctrl-C too.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from harness import free_port

BIN = Path(sys.executable).parent
GCIRCUSCTL, CIRCUSCTL = str(BIN / "gcircusctl"), str(BIN / "circusctl")


def write_ini(path: Path) -> str:
    """A config both daemons read: one `sleep` watcher, no statsd, no discovery. Returns its control endpoint."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    path.write_text(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
                    "statsd = false\nmulticast_endpoint =\n\n[watcher:sleeper]\ncmd = sleep 1000\n")
    return endpoint


def timed(argv: list[str]) -> float:
    """Seconds one client process takes, start to exit; it must succeed."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=CLEAN_ENV)
    return time.perf_counter() - start


CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("GCIRCUSCTL_ENDPOINT", "CIRCUSCTL_ENDPOINT")}


def start_daemon(argv: list[str], endpoint: str, log: Path) -> subprocess.Popen:
    """Start a daemon and wait (up to 30 s) until it answers `status`."""
    with open(log, "wb") as out:
        daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=CLEAN_ENV)
    deadline = time.monotonic() + 30
    while subprocess.run([GCIRCUSCTL, "--endpoint", endpoint, "--timeout", "1", "status"], env=CLEAN_ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{argv[0]} did not start; see {log}")
        time.sleep(0.1)
    return daemon


def stop_daemon(daemon: subprocess.Popen) -> None:
    try:
        children = psutil.Process(daemon.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    daemon.terminate()
    try:
        daemon.wait(15)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def sample(cells: dict[str, list[str]], reps: int) -> dict[str, list[float]]:
    """`reps` timed runs of every cell's argv, interleaved (one of each, then again), after one warm-up run each."""
    for argv in cells.values():
        timed(argv)
    samples: dict[str, list[float]] = {name: [] for name in cells}
    for _ in range(reps):
        for name, argv in cells.items():
            samples[name].append(timed(argv))
    return samples


def median_min(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.0f} / {min(samples) * 1000:.0f}"


def table(rows: list[tuple[str, list[float], list[float]]]) -> str:
    lines = ["| run | gcircusctl median / min (ms) | circusctl median / min (ms) | circusctl/gcircusctl (median) |",
             "|---|---|---|---|"]
    for label, ours, theirs in rows:
        ratio = statistics.median(theirs) / statistics.median(ours)
        lines.append(f"| {label} | {median_min(ours)} | {median_min(theirs)} | {ratio:.2f}× |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30, help="runs per cell (default 30)")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    rows = []
    for flag in ("--version", "--help"):
        got = sample({"g": [GCIRCUSCTL, flag], "c": [CIRCUSCTL, flag]}, args.reps)
        rows.append((f"`{flag}`", got["g"], got["c"]))
    daemons: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="gcircus-bench-ctl-") as tmp:
        try:
            ours = write_ini(Path(tmp) / "gcircus.ini")
            daemons.append(start_daemon([str(BIN / "gcircusd"), str(Path(tmp) / "gcircus.ini")], ours,
                                        Path(tmp) / "gcircusd.log"))
            theirs = write_ini(Path(tmp) / "circus.ini")
            daemons.append(start_daemon([str(BIN / "circusd"), str(Path(tmp) / "circus.ini")], theirs,
                                        Path(tmp) / "circusd.log"))
            got = sample({"g": [GCIRCUSCTL, "--endpoint", ours, "status"],
                          "c": [CIRCUSCTL, "--endpoint", ours, "status"],
                          "cc": [CIRCUSCTL, "--endpoint", theirs, "status"]}, args.reps)
        finally:
            for daemon in daemons:
                stop_daemon(daemon)
    rows.append(("`status` against gcircusd", got["g"], got["c"]))
    rows.append(("`status`: gcircusctl→gcircusd vs circusctl→circusd", got["g"], got["cc"]))
    print(f"{args.reps} runs per cell, interleaved; load average before the run: "
          f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
