#!/usr/bin/env python3
"""Control-plane abuse benchmark: what hostile or careless clients make gcircusd hold (issue 10).

Run with the project venv:  .venv/bin/python benchmarks/run_control_abuse.py   (see benchmarks/README.md)

Each case starts its own gcircusd on free ports and reports the daemon's resident memory (VmRSS) or fd count
before and after:
* casts: `--casts` restart casts on one watcher (each used to keep a greenlet and run a restart);
* unread: `--clients` clients each sending `--requests` `options` requests whose replies carry a 100 KB
  environment, never reading them (the replies used to pile up in zmq);
* flood: `--connections` idle TCP connections to the control endpoint of a daemon whose soft RLIMIT_NOFILE is
  `--fd-limit`, then the fd count and whether 20 more processes spawn.
The tests assert only bounds that hold by construction; the numbers here depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import zmq

from harness import GCIRCUSD, REPO, free_endpoint, rss_kib


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Daemon:
    def __init__(self, watcher: str, prefix: list[str] = ()):
        self.dir = Path(tempfile.mkdtemp(prefix="gcircus-abuse-"))
        self.endpoint = free_endpoint()
        config = self.dir / "circus.ini"
        config.write_text(f"[circus]\nendpoint = {self.endpoint}\npubsub_endpoint = {free_endpoint()}\n"
                          f"\n{watcher}")
        self.log = open(self.dir / "gcircusd.out", "wb")
        self.proc = subprocess.Popen([*prefix, *GCIRCUSD, str(config)], cwd=REPO,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(self.endpoint)

    def call(self, command: str, timeout: float = 60.0, **properties) -> dict:
        msg_id = os.urandom(8).hex()
        self.socket.send(json.dumps({"id": msg_id, "command": command, "properties": properties}).encode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.poll(100):
                reply = json.loads(self.socket.recv())
                if reply.get("id") == msg_id:
                    return reply
        raise TimeoutError(f"no reply to {command} in {timeout} s")

    def wait_pids(self, count: int, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.call("list", name="w").get("pids", [])) == count:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self.socket.close(linger=0)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def case_casts(args) -> dict:
    daemon = Daemon("[watcher:w]\ncmd = sh -c 'trap \"sleep 1; exit 0\" TERM; while :; do sleep 0.1; done'\n")
    try:
        daemon.wait_pids(1)
        before = rss_mib(daemon.proc.pid)
        started = time.monotonic()
        for _ in range(args.casts):
            daemon.socket.send(b'{"command": "restart", "msg_type": "cast", "properties": {"name": "w"}}')
        daemon.call("status")
        after = rss_mib(daemon.proc.pid)
        daemon.call("restart", name="w", waiting=True, timeout=600)
        return {"casts": args.casts, "rss_before_mib": round(before, 1), "rss_after_mib": round(after, 1),
                "settled_s": round(time.monotonic() - started, 2)}
    finally:
        daemon.stop()


def case_unread(args) -> dict:
    daemon = Daemon("[watcher:w]\ncmd = sleep 3600\n\n[env:w]\nBIG = " + "x" * 100_000 + "\n")
    sockets = []
    try:
        daemon.wait_pids(1)
        before = rss_mib(daemon.proc.pid)
        request = b'{"id": "x", "command": "options", "properties": {"name": "w"}}'
        for _ in range(args.clients):
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.linger, sock.rcvhwm, sock.rcvbuf = 0, 1, 4096
            sock.connect(daemon.endpoint)
            sockets.append(sock)
        for _ in range(args.requests):
            for sock in sockets:
                sock.send(request)
        peak = before
        for _ in range(50):  # 5 s of samples while the requests are served
            peak = max(peak, rss_mib(daemon.proc.pid))
            time.sleep(0.1)
        return {"clients": args.clients, "requests": args.requests, "rss_before_mib": round(before, 1),
                "rss_peak_mib": round(peak, 1)}
    finally:
        for sock in sockets:
            sock.close(linger=0)
        daemon.stop()


def case_flood(args) -> dict:
    daemon = Daemon("[watcher:w]\ncmd = sleep 3600\nnumprocesses = 2\n",
                    prefix=["prlimit", f"--nofile={args.fd_limit}:{args.fd_limit}", "--"])
    flood = []
    try:
        daemon.wait_pids(2)
        before = fds(daemon.proc.pid)
        host, port = daemon.endpoint[len("tcp://"):].rsplit(":", 1)
        for _ in range(args.connections):
            flood.append(socket.create_connection((host, int(port))))
        time.sleep(2)  # let the daemon accept (and shed) them
        during = fds(daemon.proc.pid)
        daemon.call("incr", name="w", nb=20)
        spawned = daemon.wait_pids(22, timeout=30)
        return {"fd_limit": args.fd_limit, "connections": args.connections, "fds_before": before,
                "fds_during_flood": during, "20_more_spawned": spawned}
    finally:
        for conn in flood:
            conn.close()
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--casts", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--fd-limit", type=int, default=256)
    parser.add_argument("--only", default="casts,unread,flood")
    args = parser.parse_args()
    cases = {"casts": case_casts, "unread": case_unread, "flood": case_flood}
    for name in args.only.split(","):
        print(json.dumps({"case": name, **cases[name](args)}), flush=True)


if __name__ == "__main__":
    main()
