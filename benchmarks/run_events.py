#!/usr/bin/env python3
"""Event benchmark: how soon a subscriber hears of a spawn or a death, gcircusd vs Circus 0.19.

Run with the project venv:  .venv/bin/python benchmarks/run_events.py   (see benchmarks/README.md)

With N (1000) copies of ``/bin/sleep <marker>`` running, a SUB socket on the daemon's pubsub endpoint (a reader
thread stamping each event with ``time.time()`` as it arrives) measures:

* spawn: ``incr work`` sent on the control channel -> the ``spawn`` event received (then ``decr work`` brings the
  count back to N, so every sample is taken with N running);
* reap: ``SIGKILL`` sent to one child -> its ``reap`` event received. The kills are spread at random over a
  window (the same seeded schedule for every daemon), one victim each, never a process younger than the run, so
  they land at every phase of Circus's ``check_delay`` tick and never look like a crash loop to gcircusd;
* for both, also event ``time`` field -> received (the publish path alone; same machine, same clock);
* how many of the processes the daemon stopped itself (the ``decr`` victims) got a ``reap`` at all.

Circus runs twice: with its config-file default ``check_delay = 5`` (what a user gets) and tuned to 1 s.
Every daemon is stopped and every workload child is killed (by pid), on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from pathlib import Path

from _control_clients import CircusProtocolClient
from harness import (
    RESULTS,
    TARGETS,
    EventListener,
    Run,
    Target,
    ini_value,
    machine,
    measure_targets,
    new_marker,
    start_runner,
    summary,
    wait_until,
    write_results,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="gcircusd,circus,circus-tuned", help="comma-separated targets")
    p.add_argument("-n", type=int, default=1000, help="workload processes (default 1000)")
    p.add_argument("--samples", type=int, default=200, help="spawn samples and kills per daemon (default 200)")
    p.add_argument("--window", type=float, default=40.0, help="seconds over which the kills are spread")
    p.add_argument("--tuned-check-delay", type=float, default=1.0, help="check_delay of circus-tuned")
    p.add_argument("--seed", type=int, default=26)
    p.add_argument("--quick", action="store_true", help="N=100, 40 samples over 8 s, for development")
    p.add_argument("--out", type=Path, default=RESULTS / "events.md")
    args = p.parse_args(argv)
    args.targets = [t for t in args.only.split(",") if t]
    if args.quick:
        args.n, args.samples, args.window = 100, 40, 8.0
    return args


class TunedCircus(Target):
    """Circus with `check_delay` set in the [circus] section of the same ini."""

    def __init__(self, check_delay: float):
        super().__init__("circus-tuned")
        self.check_delay = check_delay
        self.base = TARGETS["circus"]

    def prepare(self, log: Path) -> None:
        self.base.prepare(log)
        self.version = f"{self.base.version}, check_delay = {self.check_delay:g}"

    def command(self, tmp, n, marker):
        argv = self.base.command(tmp, n, marker)
        ini = tmp / "circus.ini"
        ini.write_text(ini.read_text().replace("[circus]\n", f"[circus]\ncheck_delay = {self.check_delay:g}\n", 1))
        return argv


def bench(target: Target, args, tmp_root: Path, marker: str, res: dict, notes: list[str]) -> None:
    with Run(target, args.n, tmp_root, marker) as run:
        run.wait_all_running(120 + args.n / 10)
        all_running = time.monotonic()
        client = CircusProtocolClient(run.control_endpoint())
        listener = EventListener(ini_value(run.tmp / "circus.ini", "pubsub_endpoint"))
        try:
            # Live subscription: `set` publishes `updated` (graceful_timeout set to its default, 30: no reload).
            sent = 0.0
            for _ in range(100):
                sent, _, _ = client.call_through_conflicts("set", name="work", options={"graceful_timeout": 30})
                if listener.wait(lambda t, m: t == "watcher.work.updated" and m["time"] >= sent - 1, 0.2):
                    break
            else:
                raise RuntimeError("no event received: the subscription never became live")
            originals = set(int(p) for p in client.call("list", name="work")["pids"])

            # spawn: incr -> spawn received; decr back to N (its victim is expected to get a `reap`).
            spawn_e2e, spawn_pub, decr_victims = [], [], []
            for i in range(args.samples):
                before = len(listener.events)
                sent, _, _ = client.call_through_conflicts("incr", name="work")
                event = listener.wait(lambda t, m: t == "watcher.work.spawn", 30, before)
                if event is None:
                    raise RuntimeError(f"no spawn event within 30 s (sample {i})")
                spawn_e2e.append(event[0] - sent)
                spawn_pub.append(event[0] - event[2]["time"])
                before = len(listener.events)
                client.call_through_conflicts("decr", name="work", waiting=True)
                kill = listener.wait(lambda t, m: t == "watcher.work.kill", 30, before)
                if kill is not None:
                    decr_victims.append(kill[2]["process_pid"])
            res["spawn_e2e"], res["spawn_pub"] = summary(spawn_e2e), summary(spawn_pub)
            print(f"  [{target.name}] spawn: p50 {res['spawn_e2e']['p50'] * 1e3:.2f} ms", flush=True)

            # reap: SIGKILL original children on a seeded random schedule over the window.
            alive_now = set(int(p) for p in client.call("list", name="work")["pids"])
            candidates = sorted(originals & alive_now - set(decr_victims))
            rnd = random.Random(args.seed)
            victims = rnd.sample(candidates, min(args.samples, len(candidates)))
            offsets = sorted(rnd.uniform(0, args.window) for _ in victims)
            killed: dict[int, float] = {}
            # gcircusd counts exits of processes younger than 1 s toward its built-in crash-loop guard: let the
            # youngest original reach 2 s, so that every kill is the death of an established worker.
            time.sleep(max(0.0, all_running + 2.0 - time.monotonic()))
            t0 = time.monotonic()
            for pid, offset in zip(victims, offsets):
                delay = t0 + offset - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    notes.append(f"{target.name}: victim {pid} was already gone, not counted")
                    continue
                killed[pid] = time.time()
            grace = 10.0 + 2 * getattr(target, "check_delay", 5.0 if target.name == "circus" else 0.0)
            try:
                wait_until(lambda: all(p in listener.reaps for p in killed), run.daemon, grace, 0.05)
            except Exception as exc:  # noqa: BLE001 - report what came
                notes.append(f"{target.name}: {sum(p not in listener.reaps for p in killed)} of {len(killed)} "
                             f"SIGKILLed children got no reap within {grace:g} s after the last kill ({exc})")
            reap_e2e = [listener.reaps[p][0] - at for p, at in killed.items() if p in listener.reaps]
            reap_pub = [listener.reaps[p][0] - listener.reaps[p][2]["time"] for p in killed if p in listener.reaps]
            res["reap_e2e"], res["reap_pub"] = summary(reap_e2e), summary(reap_pub)
            res["decr_reaped"] = [sum(1 for p in decr_victims if p in listener.reaps), len(decr_victims)]
            res["kill_exit_codes"] = sorted({listener.reaps[p][2]["exit_code"] for p in killed if p in listener.reaps},
                                            key=str)
            res["conflicts"] = client.conflicts
            print(f"  [{target.name}] reap: p50 {res['reap_e2e']['p50'] * 1e3:.2f} ms", flush=True)
        finally:
            listener.close()
            client.close()


def ms(cell: dict | None, key: str) -> str:
    if not cell or key not in cell:
        return "—"
    return f"{cell[key] * 1e3:.2f}"


def report(targets: list[Target], results: dict, notes: list[str], args, started: str) -> str:
    names = [t.name for t in targets]
    header = {"gcircusd": "gcircusd", "circus": "circus (check_delay 5, default)",
              "circus-tuned": f"circus (check_delay {args.tuned_check_delay:g})"}
    rows = [
        ("spawn: `incr` sent → `spawn` received, median (ms)", "spawn_e2e", "p50"),
        ("spawn: `incr` sent → `spawn` received, p99 (ms)", "spawn_e2e", "p99"),
        ("spawn: event `time` → received, median (ms)", "spawn_pub", "p50"),
        ("spawn: event `time` → received, p99 (ms)", "spawn_pub", "p99"),
        ("reap: SIGKILL → `reap` received, median (ms)", "reap_e2e", "p50"),
        ("reap: SIGKILL → `reap` received, p99 (ms)", "reap_e2e", "p99"),
        ("reap: event `time` → received, median (ms)", "reap_pub", "p50"),
        ("reap: event `time` → received, p99 (ms)", "reap_pub", "p99"),
    ]
    out = [
        f"## Event benchmark ({started})",
        "",
        f"Machine: {machine()}  ",
        "Versions: " + ", ".join(f"{t.name} {t.version}" for t in targets) + "  ",
        f"Workload: {args.n} × `/bin/sleep`; {args.samples} spawn samples (`incr` then `decr`, one at a time) and "
        f"{args.samples} SIGKILLs spread at random over {args.window:g} s (seed {args.seed}). The subscriber is a "
        "SUB socket read by a thread that stamps each event on arrival (`time.time()`, the clock the daemons use "
        "for the `time` field). Lower is better.",
        "",
        "| metric | " + " | ".join(header.get(n, n) for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for label, key, stat in rows:
        out.append(f"| {label} | " + " | ".join(ms(results.get(n, {}).get(key), stat) for n in names) + " |")
    cells = []
    for n in names:
        got = results.get(n, {}).get("decr_reaped")
        cells.append(f"{got[0]} of {got[1]}" if got else "—")
    out.append("| `reap` published for the processes `decr` stopped | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        codes = results.get(n, {}).get("kill_exit_codes")
        cells.append(", ".join(map(str, codes)) if codes else "—")
    out.append("| `exit_code` of the SIGKILLed children's reaps | " + " | ".join(cells) + " |")
    out += ["", "Both use `process.started` as the spawn `time`, but Circus takes it before the fork and gcircusd "
            "once the fork returned, so the spawn \"event `time` → received\" rows are not comparable across "
            "the columns; the `incr` sent → received rows are."]
    for n in names:
        c = results.get(n, {}).get("conflicts")
        if c:
            notes.append(f"{n}: {c} commands hit a lock conflict (`arbiter is already running ...`) and were "
                         "retried after 10 ms; the samples time the successful attempt only")
    if notes:
        out += ["", "Notes:", *(f"- {x}" for x in notes)]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    started, tmp_root = start_runner("gcircus-events-bench-")
    pool = {"gcircusd": TARGETS["gcircusd"], "circus": TARGETS["circus"],
            "circus-tuned": TunedCircus(args.tuned_check_delay)}
    targets = [pool[n] for n in args.targets]
    notes: list[str] = []
    marker = new_marker(99_970_000)
    results = measure_targets(targets, tmp_root, marker, notes,
                              lambda t, cells: bench(t, args, tmp_root, marker, cells, notes))
    raw = {"started": started, "versions": {t.name: t.version for t in targets}, "results": results, "notes": notes}
    write_results(args.out, report(targets, results, notes, args, started), raw, tmp_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
