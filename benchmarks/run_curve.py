#!/usr/bin/env python3
"""CURVE benchmark: the cost of CURVE on gcircusd's control channel, `list` against plain tcp.

Run with the project venv:  .venv/bin/python benchmarks/run_curve.py [--n 1000] [--reps 2000]

Two gcircusd run side by side with N copies of ``/bin/sleep <marker>`` each: one with a plain tcp:// control
endpoint, one whose endpoint requires CURVE (curve_secret_key, curve_clients; a key pair made for the run). One
client (a DEALER, as circusctl's; with the listed key for the CURVE daemon) asks each in turn, in blocks of
`--block` calls, so that a change of load on the machine hits both columns alike. Measured round trips: ``list``
(the watcher names) and ``list work`` (N pids: a reply that grows with N, so encryption has something to do), and
the first call of a new connection (the CURVE handshake and its ZAP check included). The overhead is CURVE minus
plain, at p50 and p99; the goal is under 1 ms at p99. Both daemons and every workload child are stopped, on errors
and Ctrl-C too.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _control_clients import CircusProtocolClient, ControlError
from gcircus.wire.curve import ClientKeys, write_key_pair
from harness import (
    RESULTS,
    SLEEP,
    GCircus,
    Run,
    circus_section,
    kill_leftovers,
    machine,
    new_marker,
    prepare_targets,
    start_runner,
    summary,
    wait_until,
    write_results,
)

OPS = {"list": {}, "list work": {"name": "work"}}
GOAL_MS = 1.0


class CurveGCircus(GCircus):
    """gcircusd whose tcp:// channels require CURVE, with one listed client key, granted read."""

    def __init__(self, keys_dir: Path):
        super().__init__()
        self.name = "gcircusd+curve"
        _, self.server_secret = write_key_pair(str(keys_dir / "server"), "server")
        clients = keys_dir / "clients"
        _, secret = write_key_pair(str(clients), "bench")  # bench.key, the listed public key, and its secret
        self.clients = str(clients)
        self.client_keys = ClientKeys.load(secret, str(keys_dir / "server" / "server.key"))

    def command(self, tmp, n, marker):
        path = tmp / "circus.ini"
        path.write_text(circus_section(curve_secret_key=self.server_secret, curve_clients=self.clients)
                        + "[access]\ncurve:bench = read\n\n"  # a listed key without a grant may run nothing
                        + f"[watcher:work]\ncmd = {SLEEP}\nargs = {marker}\nnumprocesses = {n}\n")
        return self.argv(path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000, help="workload processes per daemon (default 1000)")
    p.add_argument("--reps", type=int, default=2000, help="calls per request and daemon (default 2000)")
    p.add_argument("--block", type=int, default=100, help="calls to one daemon before switching (default 100)")
    p.add_argument("--connects", type=int, default=200, help="new connections timed per daemon (default 200)")
    p.add_argument("--quick", action="store_true", help="N=100, 400 calls, 50 connections: for development")
    p.add_argument("--out", type=Path, default=RESULTS / "curve.md")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.reps, args.connects = 100, 400, 50
    return args


def serving(client: CircusProtocolClient, run: Run, n: int) -> None:
    """Wait until the daemon answers and runs its N children."""
    def ready() -> bool:
        try:
            return len(client.call("list", name="work")["pids"]) == n
        except (TimeoutError, ControlError):
            return False
    wait_until(ready, run.daemon, 120 + n / 10, 0.2)


def interleaved(clients: dict, props: dict, reps: int, block: int) -> dict[str, list[float]]:
    """Round-trip seconds of `reps` calls to each daemon, alternating blocks of `block` calls."""
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for client in clients.values():
        for _ in range(20):  # warm up
            client.call("list", **props)
    while any(len(s) < reps for s in samples.values()):
        for name, client in clients.items():
            for _ in range(min(block, reps - len(samples[name]))):
                t0 = time.perf_counter()
                client.call("list", **props)
                samples[name].append(time.perf_counter() - t0)
    return samples


def connects(endpoints: dict, keys: dict, count: int) -> dict[str, list[float]]:
    """Seconds from a new client's connect to its first `list` reply, alternating between the daemons."""
    samples: dict[str, list[float]] = {name: [] for name in endpoints}
    for _ in range(count):
        for name, endpoint in endpoints.items():
            t0 = time.perf_counter()
            client = CircusProtocolClient(endpoint, curve=keys.get(name))
            client.call("list")
            samples[name].append(time.perf_counter() - t0)
            client.close()
    return samples


def report(results: dict, args, started: str, versions: str) -> str:
    def ms(cell: dict, key: str) -> str:
        return f"{cell[key] * 1e3:.3f}"
    out = [f"## CURVE benchmark ({started})", "", f"Machine: {machine()}  ", f"Versions: {versions}  ",
           f"Workload: {args.n} × `/bin/sleep` per daemon; {args.reps} calls per request and daemon, alternating "
           f"blocks of {args.block}; {args.connects} new connections each. Round trips in ms.", "",
           "| request | plain p50 | plain p99 | CURVE p50 | CURVE p99 | overhead p50 | overhead p99 |",
           "|---|---|---|---|---|---|---|"]
    for op, cells in results.items():
        plain, curve = cells["gcircusd"], cells["gcircusd+curve"]
        out.append(f"| {op} | {ms(plain, 'p50')} | {ms(plain, 'p99')} | {ms(curve, 'p50')} | {ms(curve, 'p99')} | "
                   f"{(curve['p50'] - plain['p50']) * 1e3:+.3f} | {(curve['p99'] - plain['p99']) * 1e3:+.3f} |")
    overhead = (results["list"]["gcircusd+curve"]["p99"] - results["list"]["gcircusd"]["p99"]) * 1e3
    verdict = "met" if overhead < GOAL_MS else "NOT met"
    out += ["", f"`list` p99 overhead of CURVE: {overhead:+.3f} ms (goal: under {GOAL_MS:g} ms: {verdict})."]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    started, tmp_root = start_runner("gcircus-curve-bench-")
    marker = new_marker(99_970_000)
    notes: list[str] = []
    targets = prepare_targets([GCircus(), CurveGCircus(tmp_root / "keys")], tmp_root, notes)
    if len(targets) < 2:
        print("\n".join(notes), file=sys.stderr)
        return 1
    results: dict[str, dict] = {}
    try:
        with Run(targets[0], args.n, tmp_root, marker) as plain, Run(targets[1], args.n, tmp_root, marker) as curve:
            keys = {"gcircusd+curve": targets[1].client_keys}
            endpoints = {"gcircusd": plain.control_endpoint(), "gcircusd+curve": curve.control_endpoint()}
            clients = {name: CircusProtocolClient(endpoint, curve=keys.get(name))
                       for name, endpoint in endpoints.items()}
            serving(clients["gcircusd"], plain, args.n)
            serving(clients["gcircusd+curve"], curve, args.n)
            for op, props in OPS.items():
                print(f"  {op}…", flush=True)
                results[op] = {name: summary(s) for name, s in interleaved(clients, props, args.reps,
                                                                          args.block).items()}
            print("  new connections…", flush=True)
            results["connect + list"] = {name: summary(s) for name, s in connects(endpoints, keys,
                                                                                 args.connects).items()}
            for client in clients.values():
                client.close()
    except KeyboardInterrupt:
        kill_leftovers(Run.LIVE, marker)
        return 130
    finally:
        kill_leftovers(Run.LIVE, marker)
    versions = ", ".join(f"{t.name} {t.version}" for t in targets)
    write_results(args.out, report(results, args, started, versions), {"results": results, "args": vars(args)},
                  tmp_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
