#!/usr/bin/env python3
"""Control-channel benchmark: request latency of gcircusd vs Circus 0.19 vs supervisord 4.3.

Run with the project venv:  .venv/bin/python benchmarks/run_control.py   (see benchmarks/README.md)

For N = 10, 100, 1000 copies of ``/bin/sleep <marker>``, measures the round trip of
* ``status`` and ``list work`` (gcircusd and circusd read the same ini file, same JSON protocol,
  one DEALER per client), and ``supervisor.getAllProcessInfo`` over supervisord's XML-RPC unix
  socket (its closest equivalent of both);
* with one client (sequential calls) and with 50 concurrent clients (threads, one socket each);
* plus, for gcircusd and Circus, ``incr work 100`` and ``decr work 100`` with ``waiting``: the time
  until the reply, i.e. until 100 processes were spawned or stopped.

Every daemon is stopped and every workload child is killed (by pid), on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _control_clients import CircusProtocolClient, ControlError, SupervisorClient, sample_concurrent, sample_serial
from harness import (
    RESULTS,
    TARGETS,
    Run,
    Target,
    machine,
    measure_targets,
    new_marker,
    start_runner,
    summary,
    wait_until,
    write_results,
)

OPS = ("status", "list")
SUPERVISOR_OP = "getAllProcessInfo"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="gcircusd,circus,supervisord", help="comma-separated targets")
    p.add_argument("--ns", default="10,100,1000", help="process counts (comma-separated)")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    p.add_argument("--reps", type=int, default=1000, help="sequential calls per single-client cell")
    p.add_argument("--reps-each", type=int, default=40, help="calls per client in the concurrent cells")
    p.add_argument("--budget", type=float, default=8.0, help="max seconds per cell")
    p.add_argument("--incr", type=int, default=100, help="processes added/removed by incr/decr")
    p.add_argument("--incr-reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="small counts, for development")
    p.add_argument("--out", type=Path, default=RESULTS / "control.md")
    args = p.parse_args(argv)
    args.targets = [t for t in args.only.split(",") if t]
    args.ns = [int(n) for n in args.ns.split(",")]
    if args.quick:
        args.ns, args.reps, args.reps_each, args.budget, args.incr, args.incr_reps = [10, 100], 200, 10, 3.0, 20, 2
    return args


def latency(samples: list[float], errors: int = 0, wall: float | None = None) -> dict:
    out = {**summary(samples), "errors": errors}
    if samples and wall:
        out["rps"] = len(samples) / wall
    return out


def wait_serving(call, daemon, timeout: float = 30.0) -> None:
    def answers() -> bool:
        try:
            call()
            return True
        except (TimeoutError, ControlError, OSError):
            return False
    wait_until(answers, daemon, timeout, 0.05)


def incr_decr(client: CircusProtocolClient, run: Run, nb: int, reps: int, base: int) -> tuple[dict, dict, int]:
    """Time `incr work nb` and `decr work nb` with waiting; retry Circus's lock conflicts (counted)."""
    ups, downs = [], []
    for _ in range(reps):
        ups.append(client.call_through_conflicts("incr", name="work", nb=nb, waiting=True)[1])
        wait_until(lambda: len(run.workload()) >= base + nb, run.daemon, 60, 0.02)
        downs.append(client.call_through_conflicts("decr", name="work", nb=nb, waiting=True)[1])
        wait_until(lambda: len(run.workload()) <= base, run.daemon, 60, 0.02)
    return latency(ups), latency(downs), client.conflicts


def bench(target: Target, args, tmp_root: Path, marker: str, res: dict, notes: list[str]) -> None:
    for n in args.ns:
        try:
            with Run(target, n, tmp_root, marker) as run:
                run.wait_all_running(60 + n / 10)
                if target.name == "supervisord":
                    sock = str(run.tmp / "supervisor.sock")
                    probe = SupervisorClient(sock)
                    wait_serving(probe.all_process_info, run.daemon)
                    assert len(probe.all_process_info()) == n
                    probe.close()
                    ops = {SUPERVISOR_OP: (lambda: SupervisorClient(sock), lambda c: c.all_process_info())}
                else:
                    endpoint = run.control_endpoint()
                    probe = CircusProtocolClient(endpoint)
                    wait_serving(lambda: probe.call("status"), run.daemon)
                    pids = probe.call("list", name="work")["pids"]
                    assert len(pids) == n, f"list work gave {len(pids)} pids, expected {n}"
                    make = lambda: CircusProtocolClient(endpoint)  # noqa: E731
                    ops = {"status": (make, lambda c: c.call("status")),
                           "list": (make, lambda c: c.call("list", name="work"))}
                for op, (make_client, call) in ops.items():
                    client = make_client()
                    res[f"{op}/{n}/1"] = latency(sample_serial(lambda: call(client), args.reps, args.budget))
                    client.close()
                    samples, wall, errors = sample_concurrent(make_client, call, args.clients, args.reps_each,
                                                              args.budget)
                    res[f"{op}/{n}/{args.clients}"] = latency(samples, errors, wall)
                    print(f"  [{target.name}] N={n} {op}: 1 client p50 {res[f'{op}/{n}/1']['p50'] * 1e3:.2f} ms, "
                          f"{args.clients} clients p50 {res[f'{op}/{n}/{args.clients}'].get('p50', 0) * 1e3:.2f} ms",
                          flush=True)
                if target.name != "supervisord" and n == min(args.ns):
                    ups, downs, conflicts = incr_decr(probe, run, args.incr, args.incr_reps, n)
                    res["incr"], res["decr"] = ups, downs
                    if conflicts:
                        notes.append(f"{target.name}: incr/decr hit {conflicts} lock conflicts "
                                     "(`arbiter is already running ...`), retried after 10 ms; only the "
                                     "successful call is timed")
                if target.name != "supervisord":
                    probe.close()
        except Exception as exc:  # noqa: BLE001 - one broken target costs only its own cells
            notes.append(f"{target.name} N={n}: {type(exc).__name__}: {exc}")
            print(f"  [{target.name}] N={n} failed: {exc}", flush=True)


def ms(cell: dict | None) -> str:
    if not cell or "p50" not in cell:
        return "—"
    return f"{cell['p50'] * 1e3:.2f} / {cell['p99'] * 1e3:.2f}"


def ratio(other: dict | None, base: dict | None) -> str:
    if not other or not base or "p50" not in other or "p50" not in base:
        return "—"
    return f"{other['p50'] / base['p50']:.1f}× / {other['p99'] / base['p99']:.1f}×"


def report(targets: list[Target], results: dict, notes: list[str], args, started: str) -> str:
    names = [t.name for t in targets]
    g, c, s = (results.get(k, {}) for k in ("gcircusd", "circus", "supervisord"))
    out = [
        f"## Control-channel benchmark ({started})",
        "",
        f"Machine: {machine()}  ",
        "Versions: " + ", ".join(f"{t.name} {t.version}" for t in targets) + "  ",
        f"Workload: N × `/bin/sleep`. Round trip in ms, **p50 / p99**; up to {args.reps} sequential calls "
        f"(1 client) or {args.clients} threads × {args.reps_each} calls, each with its own socket, at most "
        f"{args.budget:g} s per cell. supervisord has no `status`/`list`: its column is "
        f"`supervisor.getAllProcessInfo` over XML-RPC, the same measurement in both rows. Ratios are "
        "other / gcircusd (p50 / p99); above 1 means gcircusd is faster.",
        "",
        "| request | N | clients | " + " | ".join(names) + " | circus/gcircusd | supervisord/gcircusd |",
        "|---|---|---|" + "---|" * (len(names) + 2),
    ]
    for op in OPS:
        for n in args.ns:
            for k in (1, args.clients):
                key, skey = f"{op}/{n}/{k}", f"{SUPERVISOR_OP}/{n}/{k}"
                row = {"gcircusd": ms(g.get(key)), "circus": ms(c.get(key)), "supervisord": ms(s.get(skey))}
                label = "status" if op == "status" else "list work"
                out.append(f"| {label} | {n} | {k} | " + " | ".join(row[x] for x in names)
                           + f" | {ratio(c.get(key), g.get(key))} | {ratio(s.get(skey), g.get(key))} |")
    for op in ("incr", "decr"):
        row = {"gcircusd": ms(g.get(op)), "circus": ms(c.get(op)), "supervisord": "n/a"}
        out.append(f"| {op} {args.incr} --waiting | {min(args.ns)} | 1 | " + " | ".join(row[x] for x in names)
                   + f" | {ratio(c.get(op), g.get(op))} | — |")
    out += ["", f"incr/decr: p50 / p99 over {args.incr_reps} runs, each from N={min(args.ns)} to "
            f"N+{args.incr} and back; the time until the waited reply."]
    few = [f"{t} {k}: {v['n']}" for t, cells in results.items() for k, v in cells.items()
           if isinstance(v, dict) and "/" in k and 0 < v["n"] < (args.reps if k.endswith("/1") else
                                                               args.clients * args.reps_each)]
    if few:
        notes.append(f"cells cut short by the {args.budget:g} s budget (samples taken): " + ", ".join(few))
    errors = [(t, k, v["errors"]) for t, cells in results.items() for k, v in cells.items()
              if isinstance(v, dict) and v.get("errors")]
    for t, k, e in errors:
        notes.append(f"{t} {k}: {e} calls failed (not counted)")
    if notes:
        out += ["", "Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    started, tmp_root = start_runner("gcircus-control-bench-")
    targets = [TARGETS[n] for n in args.targets]
    notes: list[str] = []
    marker = new_marker(99_980_000)
    results = measure_targets(targets, tmp_root, marker, notes,
                              lambda t, cells: bench(t, args, tmp_root, marker, cells, notes))
    raw = {"started": started, "versions": {t.name: t.version for t in targets}, "results": results, "notes": notes}
    write_results(args.out, report(targets, results, notes, args, started), raw, tmp_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
