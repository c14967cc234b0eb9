#!/usr/bin/env python3
"""Hand-over benchmark: `gcircusctl upgrade` with N supervised processes (default 1000).

Run with the project venv:  .venv/bin/python benchmarks/run_handover.py [--processes 1000] [--reps 3]

One gcircusd is started from a temp ini on free 127.0.0.1 ports with one `sleep` watcher of N processes. Each rep
runs `gcircusctl upgrade` while a client thread asks `numprocesses` in a loop: the longest gap between two answers
is how long the control channel was silent. Reported per rep: that gap, the wall time of the gcircusctl command
(it polls every 0.1 s, so it includes up to one poll interval), and how many of the N pids changed (goal 0). The
daemon and its children are stopped on errors and Ctrl-C too.

`--variant loaded` makes the hand-over carry more: every one of the N processes writes a line every LOADED_PERIOD
seconds to a FileStream (one file), says it is ready with `ready = fd:3`, and a second watcher of 4 processes holds
a listening [socket] (use_sockets). The same numbers are reported, over both watchers' pids.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gcircus.client import CallError, Client
from harness import free_port

BIN = Path(sys.executable).parent
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("GCIRCUSCTL_ENDPOINT", "CIRCUSCTL_ENDPOINT")}


class Prober(threading.Thread):
    """Asks the daemon in a loop; `gaps()` is the longest time between two answers since `mark()`."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.answers: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        client = Client(self.endpoint, timeout=0.5, green=False)
        while not self.stopping.is_set():
            try:
                client.call("numprocesses")
                self.answers.append(time.perf_counter())
            except CallError:
                client.close()
                client = Client(self.endpoint, timeout=0.5, green=False)
        client.close()

    def longest_gap(self, since: float) -> float:
        times = [t for t in self.answers if t >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=float("nan"))


LOADED_PERIOD = 10  # seconds between two lines of each process in the loaded variant
WATCHERS = {"plain": ("sl",), "loaded": ("sl", "web")}


def watchers_ini(variant: str, processes: int, tmp: Path) -> str:
    """The [watcher:...] (and [socket:...]) sections of a variant."""
    plain = f"[watcher:sl]\ncmd = sleep 100000\nnumprocesses = {processes}\nwarmup_delay = 0\ngraceful_timeout = 1\n"
    if variant == "plain":
        return plain
    chatty = f"i=0; echo ready >&3; while :; do i=$((i+1)); echo $$ $i; sleep {LOADED_PERIOD}; done"
    return (f"[watcher:sl]\ncmd = sh -c '{chatty}'\nnumprocesses = {processes}\nwarmup_delay = 0\n"
            f"graceful_timeout = 1\nready = fd:3\nready_timeout = 300\n"
            f"stdout_stream.class = FileStream\nstdout_stream.filename = {tmp}/sl.log\n\n"
            f"[socket:web]\nhost = 127.0.0.1\nport = {free_port()}\n\n"
            f"[watcher:web]\ncmd = sleep 100000\nuse_sockets = True\nnumprocesses = 4\ngraceful_timeout = 1\n")


def pids(endpoint: str, names: tuple[str, ...] = ("sl",)) -> list[int]:
    with Client(endpoint, timeout=30, green=False) as client:
        return sorted(pid for name in names for pid in client.call("list", name=name)["pids"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--variant", choices=sorted(WATCHERS), default="plain")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gcircus-handover-bench-"))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ini = tmp / "circus.ini"
    ini.write_text(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
                   f"statsd = false\nmulticast_endpoint =\n\n" + watchers_ini(args.variant, args.processes, tmp))
    names = WATCHERS[args.variant]
    expected = args.processes + (4 if "web" in names else 0)
    with open(tmp / "gcircusd.log", "wb") as out:
        daemon = subprocess.Popen([str(BIN / "gcircusd"), str(ini)], stdout=out, stderr=subprocess.STDOUT,
                                  env=CLEAN_ENV)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if len(pids(endpoint, names)) == expected:
                    break
            except CallError:
                pass
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gcircusd did not start {expected} processes; see {tmp}/gcircusd.log")
            time.sleep(0.2)
        prober = Prober(endpoint)
        prober.start()
        print(f"{expected} processes ({args.variant}); per upgrade: control channel silent (s), gcircusctl wall "
              f"time (s), pids changed")
        for rep in range(args.reps):
            before = pids(endpoint, names)
            time.sleep(0.5)
            start = time.perf_counter()
            subprocess.run([str(BIN / "gcircusctl"), "--endpoint", endpoint, "upgrade"], check=True, env=CLEAN_ENV,
                           stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            time.sleep(0.5)
            if not any(t > start + wall for t in prober.answers):
                raise RuntimeError("the prober got no answer from the new image")
            changed = len(set(before) ^ set(pids(endpoint, names))) // 2
            print(f"  rep {rep + 1}: {prober.longest_gap(start - 0.5):.3f}  {wall:.3f}  {changed}")
        prober.stopping.set()
        prober.join(5)
    finally:
        daemon.terminate()
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
