#!/usr/bin/env python3
"""Readiness and health benchmark (issue 13): how soon a subscriber hears that a process is ready, and what health
checks cost gcircusd when nothing happens.

Run with the project venv:  .venv/bin/python benchmarks/run_readiness.py   (about 5 minutes; see benchmarks/README.md)
    --quick              N = 100 for the latency, 10 s CPU windows: about a minute, for development
    --only latency|health, -n 1000, --spread 5, --modes tcp,watchdog, --health-n 100, --seconds 30, --watchdog-sec 2

Latency (`ready = notify`, N = 1000 processes of benchmarks/_readiness_child.py, `python -S -I`). Every child starts,
then blocks on a FIFO until all N are up (so no READY=1 competes with the start-up of the others), waits a random
0..--spread seconds, takes ``time.time()`` and sends ``READY=1`` to its NOTIFY_SOCKET, writes that time to a file
named by its pid, and execs ``sleep`` (same pid, the interpreter's memory is freed). A SUB socket on gcircusd's
pubsub endpoint, read by a thread, stamps each ``watcher.work.ready`` event with ``time.time()`` on arrival.
Per pid: latency = received - sent; split into sent -> the event's ``time`` (gcircusd noticed and published) and
``time`` -> received (the publish path). Two cases: ``spread`` (the sends spread over --spread seconds: latency, not
queueing) and ``burst`` (all N send at the same moment the barrier opens: the worst case, queueing included).

Health cost (--health-n = 100 processes, over --seconds of steady state after every process is ready, CPU of the
gcircusd process from /proc as % of one core):
* ``tcp``: each child listens on 127.0.0.WID:PORT; ``ready`` and ``health = tcp:127.0.0.$(circus.wid):PORT``,
  ``health_interval = 1``; baseline: the same with ``health = none``;
* ``watchdog``: ``ready = notify``, ``health = watchdog``, ``watchdog_sec = --watchdog-sec``; each child pings
  ``WATCHDOG=1`` every half period (1 s by default), as systemd advises; baseline: ``health = none`` (then gcircusd
  sets no WATCHDOG_USEC and the children do not ping).
The cost of the checks is the difference between a variant and its baseline. The children count what they
answered or sent (so the report shows the checks really ran) and any `unhealthy` or `spawn` event in the window is
reported (there should be none).

Everything the runner starts is stopped, and leftovers killed by pid (daemons) or by this run's marker. The table
is printed and written to benchmarks/results/readiness.md (raw numbers in readiness.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _control_clients import CircusProtocolClient
from harness import (
    BENCH_DIR,
    RESULTS,
    EventListener,
    GCircus,
    Run,
    circus_section,
    free_port,
    ini_value,
    kill_leftovers,
    machine,
    new_marker,
    prepare_targets,
    start_runner,
    summary,
    wait_until,
    write_results,
)

CHILD = BENCH_DIR / "_readiness_child.py"
PYTHON = getattr(sys, "_base_executable", sys.executable)  # the children need no venv: -S -I, stdlib only


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="latency,health", help="latency, health or both (default)")
    p.add_argument("-n", type=int, default=1000, help="processes for the latency cases (default 1000)")
    p.add_argument("--spread", type=float, default=5.0, help="seconds the READY=1 sends are spread over")
    p.add_argument("--modes", default="tcp,watchdog", help="health variants to measure (default both)")
    p.add_argument("--health-n", type=int, default=100, help="processes for the health cost (default 100)")
    p.add_argument("--seconds", type=float, default=30.0, help="CPU window per health variant (default 30)")
    p.add_argument("--watchdog-sec", type=float, default=2.0, help="watchdog_sec (children ping every half)")
    p.add_argument("--quick", action="store_true", help="N = 100 and 10 s windows, for development")
    p.add_argument("--out", type=Path, default=RESULTS / "readiness.md")
    args = p.parse_args(argv)
    args.parts = [x for x in args.only.split(",") if x]
    if args.quick:
        args.n, args.seconds = 100, 10.0
    return args


class ConfiguredGCircus(GCircus):
    """gcircusd on an ini whose [watcher:work] section `section(tmp, n, marker)` writes."""

    def __init__(self, section):
        super().__init__()
        self.section = section

    def command(self, tmp, n, marker):
        ini = tmp / "circus.ini"
        ini.write_text(circus_section() + self.section(tmp, n, marker))
        return self.argv(ini)


def workdir(tmp: Path, *subdirs: str) -> Path:
    """A fresh directory for the children's files (their pid files in `subdirs`)."""
    path = tmp / f"children-{time.monotonic_ns()}"
    for sub in subdirs:
        (path / sub).mkdir(parents=True)
    return path


def child_cmd(mode: str, work: Path, arg: object, marker: str) -> str:
    return f"{PYTHON} -S -I {CHILD} {mode} {work} {arg} $(circus.wid) {marker}"


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def daemon_cpu(run: Run) -> float:
    """User + system seconds of the daemon so far (from /proc)."""
    times = run.daemon.cpu_times()
    return times.user + times.system


def children_cpu(run: Run) -> float:
    """User + system seconds of the daemon's children so far (an exec keeps a process's times)."""
    total = 0.0
    for pid in run.scanner.descendants():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def hub_waited(run: Run) -> float:
    """Seconds the daemon's main thread (the hub) has spent runnable but waiting for a CPU (/proc/PID/schedstat):
    what a busy machine adds to a latency, which the daemon's own code does not."""
    with open(f"/proc/{run.daemon.pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


# ---- latency ---------------------------------------------------------------------------------------------------

def latency_case(args, spread: float, tmp_root: Path, marker: str, notes: list[str]) -> dict:
    """One gcircusd with N notify children; the READY=1 sends released together and spread over `spread` s."""
    holder: dict[str, Path] = {}

    def section(tmp, n, marker_):
        work = holder["work"] = workdir(tmp, "waiting", "sent")
        os.mkfifo(work / "go")
        return (f"[watcher:work]\ncmd = {child_cmd('ready', work, spread, marker_)}\nnumprocesses = {n}\n"
                "ready = notify\nready_timeout = 0\ngraceful_timeout = 5\n")

    target = ConfiguredGCircus(section)
    prepare_targets([target], tmp_root, notes)
    with Run(target, args.n, tmp_root, marker) as run:
        listener = EventListener(ini_value(run.tmp / "circus.ini", "pubsub_endpoint"))
        try:
            return _measure_latency(run, listener, holder["work"], args.n, spread, target.version)
        finally:
            listener.close()


def _measure_latency(run: Run, listener: EventListener, work: Path, n: int, spread: float, version: str) -> dict:
    waiting = work / "waiting"
    wait_until(lambda: len(os.listdir(waiting)) >= n, run.daemon, 120 + n / 5, 0.2)
    wait_until(lambda: bool(listener.named("spawn")), run.daemon, 10, 0.05)  # the subscription is live
    time.sleep(0.5)  # the last child to mark itself waiting reaches its open() of the FIFO
    before = len(listener.events)
    children0 = children_cpu(run)
    load_before, cpu0, waited0, t0 = load(), daemon_cpu(run), hub_waited(run), time.monotonic()
    go = os.open(work / "go", os.O_WRONLY)  # opens the barrier (kept open: a late child passes it too)
    try:
        wait_until(lambda: len(listener.named("ready", before)) >= n, run.daemon, spread + 60 + n / 20, 0.05)
    finally:
        os.close(go)
    cpu, waited, elapsed = daemon_cpu(run) - cpu0, hub_waited(run) - waited0, time.monotonic() - t0
    children = children_cpu(run) - children0  # read after the window: its own cost is not in it
    wait_until(lambda: len(os.listdir(work / "sent")) >= n, run.daemon, 10, 0.05)
    ready = {e[2]["process_pid"]: e for e in listener.named("ready", before)}
    e2e, detect, publish = [], [], []
    for name in os.listdir(work / "sent"):
        if name.endswith(".tmp") or int(name) not in ready:
            continue
        sent = float((work / "sent" / name).read_text())
        received, _, msg = ready[int(name)]
        e2e.append(received - sent)
        detect.append(msg["time"] - sent)
        publish.append(received - msg["time"])
    return {"version": version, "n": n, "spread": spread, "matched": len(e2e), "ready_events": len(ready),
            "e2e": summary(e2e), "detect": summary(detect), "publish": summary(publish),
            "daemon_cpu_s": round(cpu, 3), "hub_waited_s": round(waited, 3), "children_cpu_s": round(children, 2),
            "window_s": round(elapsed, 2),
            "load_before": load_before}


# ---- health cost -------------------------------------------------------------------------------------------------

def health_section(mode: str, health: str, port: int, watchdog_sec: float):
    def section(tmp, n, marker):
        work = workdir(tmp, "count")
        ready = f"tcp:127.0.0.$(circus.wid):{port}" if mode == "tcp" else "notify"
        check = {"none": "none", "tcp": ready, "watchdog": "watchdog"}[health]
        return (f"[watcher:work]\ncmd = {child_cmd(mode, work, port, marker)}\nnumprocesses = {n}\n"
                f"ready = {ready}\nhealth = {check}\nhealth_interval = 1\nwatchdog_sec = {watchdog_sec:g}\n"
                "graceful_timeout = 5\n")
    return section


def counted(run: Run) -> int:
    """What the children counted so far (accepted probes or pings sent), summed."""
    total = 0
    for count_dir in run.tmp.glob("children-*/count"):
        for path in count_dir.iterdir():
            total += int.from_bytes(path.read_bytes()[:8] or b"\0", "little")
    return total


def health_case(args, mode: str, health: str, tmp_root: Path, marker: str, notes: list[str]) -> dict:
    """gcircusd with --health-n children of `mode`, checked with `health`; its CPU over --seconds at rest."""
    target = ConfiguredGCircus(health_section(mode, health, free_port(), args.watchdog_sec))
    prepare_targets([target], tmp_root, notes)
    with Run(target, args.health_n, tmp_root, marker) as run:
        listener = EventListener(ini_value(run.tmp / "circus.ini", "pubsub_endpoint"))
        client = CircusProtocolClient(run.control_endpoint())
        try:
            def active() -> bool:
                try:
                    return client.call("status", name="work").get("status") == "active"
                except Exception:  # noqa: BLE001 - not answering yet
                    return False
            wait_until(active, run.daemon, 120, 0.2)
            time.sleep(3)  # settle: the start-up work is done, the first checks ran
            before, load_before = len(listener.events), load()
            cpu0, count0, t0 = daemon_cpu(run), counted(run), time.monotonic()
            time.sleep(args.seconds)
            cpu, elapsed = daemon_cpu(run) - cpu0, time.monotonic() - t0
            checks = counted(run) - count0
            trouble = {kind: len(listener.named(kind, before)) for kind in ("unhealthy", "spawn", "not_ready")}
            status = client.call("status", name="work").get("status")
        finally:
            client.close()
            listener.close()
    return {"version": target.version, "mode": mode, "health": health, "n": args.health_n,
            "cpu_percent": round(cpu / elapsed * 100, 3), "cpu_s": round(cpu, 3), "window_s": round(elapsed, 2),
            "checks_per_s": round(checks / elapsed, 1), "events": trouble, "status_after": status,
            "load_before": load_before}


# ---- report ------------------------------------------------------------------------------------------------------

def ms(cell: dict, key: str) -> str:
    return f"{cell[key] * 1e3:.2f}" if cell and key in cell else "—"


def latency_rows(results: dict) -> list[str]:
    out = ["| case | processes | matched | sent → received p50 / p99 / max (ms) | sent → event `time` p50 / p99 (ms) "
           "| `time` → received p50 / p99 (ms) | in the window: daemon CPU / hub waiting for a CPU / children's CPU "
           "| load before |",
           "|---|---:|---:|---|---|---|---|---|"]
    for name, r in results.items():
        if "e2e" not in r:
            out.append(f"| {name} | — | — | {r.get('error', 'not run')} | | | | |")
            continue
        what = f"spread over {r['spread']:g} s" if r["spread"] else "burst (all at once)"
        e, d, p = r["e2e"], r["detect"], r["publish"]
        out.append(f"| {what} | {r['n']} | {r['matched']} | {ms(e, 'p50')} / {ms(e, 'p99')} / {ms(e, 'max')} | "
                   f"{ms(d, 'p50')} / {ms(d, 'p99')} | {ms(p, 'p50')} / {ms(p, 'p99')} | "
                   f"{r['daemon_cpu_s']:.2f} s / {r['hub_waited_s']:.2f} s / {r['children_cpu_s']:.2f} s in "
                   f"{r['window_s']:.1f} s | "
                   f"{r['load_before']} |")
    return out


def health_rows(results: dict) -> list[str]:
    out = ["| children | health | daemon CPU (% of one core) | check cost (% of one core) | checks/pings per s "
           "| unhealthy / spawn events | load before |", "|---|---|---:|---:|---:|---|---|"]
    for mode in ("tcp", "watchdog"):
        base = results.get(f"{mode}/none", {})
        for health in (mode, "none"):
            r = results.get(f"{mode}/{health}")
            if r is None:
                continue
            if "cpu_percent" not in r:
                out.append(f"| {mode} | {health} | {r.get('error', 'not run')} | | | | |")
                continue
            cost = (f"{r['cpu_percent'] - base['cpu_percent']:.2f}" if health != "none" and "cpu_percent" in base
                    else "—")
            ev = r["events"]
            out.append(f"| {r['n']} × {mode} | {r['health']} | {r['cpu_percent']:.2f} | {cost} | "
                       f"{r['checks_per_s']:g} | {ev['unhealthy']} / {ev['spawn']} | {r['load_before']} |")
    return out


def report(latency: dict, health: dict, notes: list[str], args, started: str) -> str:
    out = [f"## Readiness and health benchmark ({started})", "", f"Machine: {machine()}  ",
           f"Load average when the run started: {load()}  "]
    versions = {r.get("version") for r in (*latency.values(), *health.values()) if r.get("version")}
    out += ["Versions: gcircusd " + ", ".join(sorted(versions)), ""]
    if latency:
        out += ["Readiness latency: `ready = notify`, READY=1 sent by the child → `watcher.work.ready` received by a "
                "subscriber. Lower is better.", "", *latency_rows(latency), ""]
    if health:
        out += [f"Health checks at rest: {args.seconds:g} s per row after all processes are ready; "
                f"`health_interval = 1` (tcp), `watchdog_sec = {args.watchdog_sec:g}` with a ping every "
                f"{args.watchdog_sec / 2:g} s (watchdog). Check cost = the row minus its `health = none` baseline.",
                "", *health_rows(health), ""]
    if notes:
        out += ["Notes:", *(f"- {x}" for x in notes)]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    started, tmp_root = start_runner("gcircus-readiness-bench-")
    marker = new_marker(99_950_000)
    latency: dict[str, dict] = {}
    health: dict[str, dict] = {}
    notes: list[str] = []
    cases = []
    if "latency" in args.parts:
        cases += [(latency, "spread", lambda: latency_case(args, args.spread, tmp_root, marker, notes)),
                  (latency, "burst", lambda: latency_case(args, 0.0, tmp_root, marker, notes))]
    if "health" in args.parts:
        for mode in [m for m in args.modes.split(",") if m]:
            for check in (mode, "none"):
                cases.append((health, f"{mode}/{check}",
                               lambda m=mode, c=check: health_case(args, m, c, tmp_root, marker, notes)))
    try:
        for table, name, measure in cases:
            print(f"[{name}] measuring (load {load()})…", flush=True)
            try:
                table[name] = measure()
            except Exception as exc:  # noqa: BLE001 - one broken case costs only its own row
                table[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  [{name}] {json.dumps(table[name])}", flush=True)
    except KeyboardInterrupt:
        notes.append("interrupted: the remaining cases were not measured")
    finally:
        kill_leftovers(Run.LIVE, marker)
    raw = {"started": started, "latency": latency, "health": health, "notes": notes}
    write_results(args.out, report(latency, health, notes, args, started), raw, tmp_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
