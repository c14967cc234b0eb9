#!/usr/bin/env python3
"""Core benchmark: gcircusd vs Circus vs supervisord on the same workload, in one run.

Run with the project venv (it has psutil):  /work/main/.venv/bin/python benchmarks/run_core.py
See benchmarks/README.md. The workload is N copies of ``/bin/sleep <marker>`` so that the cost
measured is the supervisor's, not the child's. Metrics, all "lower is better":

* cold start: daemon launch -> all N children running (N small and N large);
* kill -9 -> replacement: SIGKILL one child of N small, time until a new workload child appears;
* idle CPU and RSS of the daemon with N large children, over a quiet window.

A broken or hanging supervisor only costs its own timeouts: its cells read "fail"/"timeout" and
the others are still measured. Every daemon is stopped and every workload child is killed (by
pid) at the end, on errors and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import psutil

from harness import (
    FAIL,
    RESULTS,
    TARGETS,
    DaemonDied,
    Run,
    Target,
    failure,
    kill_leftovers,
    kill_pids,
    machine,
    new_marker,
    prepare_targets,
    start_runner,
    wait_until,
    write_results,
)

KILL_POLL = 0.01  # s between full scans while waiting for all N children
REPLACE_POLL = 0.001  # s between cheap checks for the replacement after a kill (the timing resolution)


def kill_test(run: Run, reps: int, gap_min: float, gap_max: float, seed: int) -> list[float]:
    """SIGKILL one child ``reps`` times; return the seconds until each replacement appeared.

    The pause before each kill is random in [gap_min, gap_max] (same seed for every target). With
    gap_max equal to Circus's check_delay, the kills land at a uniformly random phase of its
    periodic tick, so the median is not biased by locking onto that period.
    """
    rng = random.Random(seed)
    samples = []
    for _ in range(reps):
        wait_until(lambda: len(run.workload()) >= run.n, run.daemon, 30, KILL_POLL)
        time.sleep(rng.uniform(gap_min, gap_max))
        before = run.workload()
        victim = rng.choice(sorted(before))
        run.scanner.forget(victim)
        kill_pids([victim])
        t0 = time.perf_counter()
        wait_until(lambda: replacement_running(run, before), run.daemon, 30, REPLACE_POLL)
        samples.append(time.perf_counter() - t0)
    return samples


def replacement_running(run: Run, before: set[int]) -> bool:
    """A new direct child of the daemon already running the workload command (exec done).

    Reads the kernel's children list of the daemon (a few small reads) instead of scanning all of /proc, so it
    can be polled every millisecond without disturbing what it measures. All three supervisors start the workload
    as their direct children.
    """
    pid = run.daemon.pid
    fresh: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                fresh.extend(int(x) for x in f.read().split() if int(x) not in before)
    except OSError:
        return False
    for child in fresh:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:-1]
        except OSError:
            continue
        if run.scanner.is_workload([a.decode(errors="replace") for a in argv]):
            return True
    return False


def idle_usage(run: Run, seconds: float) -> tuple[float, float, str]:
    """CPU % of one core and RSS MiB of the daemon (plus any non-workload helper descendants).

    CPU is the user+system time delta over the wall time; children's times are excluded. The
    runner does not poll during the window so it does not disturb what it measures.
    """
    time.sleep(2)  # let start-up work settle before the window opens
    _, helpers = run.scanner.scan()
    procs = [psutil.Process(run.daemon.pid)] + [psutil.Process(p) for p in helpers]

    def cpu() -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    c0, t0 = cpu(), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = cpu(), time.perf_counter()
    if run.daemon.poll() is not None:
        raise DaemonDied(f"daemon exited with code {run.daemon.returncode}")
    rss = sum(p.memory_info().rss for p in procs if p.is_running())
    still = len(run.workload())
    note = f"{len(helpers)} helper process(es) included" if helpers else ""
    if still != run.n:
        note += f"; only {still}/{run.n} children at the end of the window"
    return 100 * (c1 - c0) / (t1 - t0), rss / 2**20, note.strip("; ")


def bench(target: Target, args, tmp_root: Path, marker: str, res: dict, notes: list[str]) -> None:
    """All metrics for one target, filled into ``res`` as they come (an interrupt keeps those
    measured). Every phase records a value or a failure cell and never raises (except
    KeyboardInterrupt), so the next target is always measured."""

    def note(phase: str, exc: BaseException, run: Run | None) -> None:
        tail = run.log_tail() if run else ""
        notes.append(f"{target.name}, {phase}: {type(exc).__name__}: {exc}" + (f" — log: {tail}" if tail else ""))

    # Phase 1: N small -> cold start, then the kill test on the same daemon.
    run = None
    try:
        with Run(target, args.n_small, tmp_root, marker) as run:
            res["cold_small"] = run.wait_all_running(args.start_timeout)
            try:
                s = kill_test(run, args.kill_reps, args.kill_gap_min, args.kill_gap, args.seed)
                res["kill_samples"] = [round(x, 4) for x in s]
                slow = sum(x > 5.5 for x in s)
                notes.append(f"{target.name}, kill test: min {min(s) * 1000:.0f} ms, max {max(s) * 1000:.0f} ms"
                             + (f", {slow} of {len(s)} over 5.5 s" if slow else ""))
                res["kill_med"] = statistics.median(s)
                res["kill_p99"] = statistics.quantiles(s, n=100, method="inclusive")[98] if len(s) > 1 else s[0]
            except Exception as exc:
                res["kill_med"] = res["kill_p99"] = failure(exc)
                note("kill test", exc, run)
    except Exception as exc:
        res.setdefault("cold_small", failure(exc))
        res.setdefault("kill_med", FAIL)
        res.setdefault("kill_p99", FAIL)
        note(f"N={args.n_small}", exc, run)

    # Phase 2: N large -> cold start, idle window, stop time.
    run = None
    try:
        with Run(target, args.n_large, tmp_root, marker) as run:
            res["cold_large"] = run.wait_all_running(args.start_timeout_large)
            try:
                res["idle_cpu"], res["idle_rss"], extra = idle_usage(run, args.idle_secs)
                if extra:
                    notes.append(f"{target.name}, idle: {extra}")
            except Exception as exc:
                res["idle_cpu"] = res["idle_rss"] = failure(exc)
                note("idle", exc, run)
        res["stop_large"] = run.stop_cell()
    except Exception as exc:
        res.setdefault("cold_large", failure(exc))
        for k in ("idle_cpu", "idle_rss", "stop_large"):
            res.setdefault(k, FAIL)
        note(f"N={args.n_large}", exc, run)


# ---- report -------------------------------------------------------------------------------------

def metric_rows(args) -> list[tuple[str, str, float]]:
    """(key, label, scale) in table order; the scale turns seconds into the unit of the label."""
    return [
        ("cold_small", f"cold start, {args.n_small} procs (s)", 1),
        ("cold_large", f"cold start, {args.n_large} procs (s)", 1),
        ("kill_med", f"kill -9 → replacement, median (ms), {args.n_small} procs", 1000),
        ("kill_p99", f"kill -9 → replacement, p99 (ms), {args.n_small} procs", 1000),
        ("idle_cpu", f"idle CPU, {args.n_large} procs (% of a core, {args.idle_secs:g} s)", 1),
        ("idle_rss", f"daemon RSS, {args.n_large} procs (MiB)", 1),
        ("stop_large", f"stop (SIGTERM → all exited), {args.n_large} procs (s)", 1),
    ]


def fmt(value, scale: float) -> str:
    if not isinstance(value, (int, float)):
        return str(value) if value is not None else "—"
    v = value * scale
    return f"{v:.0f}" if v >= 100 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def ratio(value, base) -> str:
    if isinstance(value, (int, float)) and isinstance(base, (int, float)) and base > 0:
        return f"{value / base:.2f}×"
    return "—"


def report(targets: list[Target], results: dict, notes: list[str], args, started: str) -> str:
    cols = [t.name for t in targets]
    out = [
        f"## Core benchmark ({started})",
        "",
        f"Machine: {machine()}  ",
        "Versions: " + ", ".join(f"{t.name} {t.version}" for t in targets) + "  ",
        f"Workload: N × `/bin/sleep` (no output). Kill test: {args.kill_reps} kills, random pause "
        f"{args.kill_gap_min:g}–{args.kill_gap:g} s before each, poll every {REPLACE_POLL * 1000:g} ms. "
        "Circus runs with its default check_delay (5 s, not tuned). Lower is better everywhere.",
        "",
    ]
    ratio_cols = [c for c in ("circus", "supervisord") if c in cols and "gcircusd" in cols]
    header = ["metric", *cols, *(f"{c}/gcircusd" for c in ratio_cols)]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, label, scale in metric_rows(args):
        cells = [fmt(results.get(c, {}).get(key, "—"), scale) for c in cols]
        base = results.get("gcircusd", {}).get(key)
        cells += [ratio(results[c].get(key), base) for c in ratio_cols]
        out.append("| " + " | ".join([label, *cells]) + " |")
    if notes:
        out += ["", "Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


# ---- main ---------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="gcircusd,circus,supervisord",
                   help="comma-separated targets, from: " + ",".join(TARGETS))
    p.add_argument("--quick", action="store_true", help="small counts and short windows, for development")
    p.add_argument("--n-small", type=int, help="processes for the small cold start and the kill test (100)")
    p.add_argument("--n-large", type=int, help="processes for the large cold start and idle (1000)")
    p.add_argument("--kill-reps", type=int, help="kills in the kill test (40)")
    p.add_argument("--kill-gap", type=float, default=5.0, help="max random pause before a kill, s (5)")
    p.add_argument("--kill-gap-min", type=float, default=0.05,
                   help="min random pause before a kill, s (0.05); above 1 s no two kills fall within"
                        " a 1 s flapping window")
    p.add_argument("--idle-secs", type=float, help="idle measurement window, s (20)")
    p.add_argument("--seed", type=int, default=1234, help="seed for kill pauses and victims")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.md")
    a = p.parse_args(argv)
    quick = a.quick
    a.n_small = a.n_small or (20 if quick else 100)
    a.n_large = a.n_large or (100 if quick else 1000)
    a.kill_reps = a.kill_reps or (5 if quick else 40)
    a.idle_secs = a.idle_secs or (3 if quick else 20)
    a.start_timeout = 30 + a.n_small / 10
    a.start_timeout_large = 60 + a.n_large / 10
    a.targets = [t.strip() for t in a.only.split(",") if t.strip()]
    bad = [t for t in a.targets if t not in TARGETS]
    if bad:
        p.error(f"unknown target(s): {', '.join(bad)}")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    started, tmp_root = start_runner("gcircus-bench-")
    targets = [TARGETS[n] for n in args.targets]
    results: dict[str, dict] = {}
    notes: list[str] = []
    marker = new_marker(99_990_000)
    try:
        ready = prepare_targets(targets, tmp_root, notes)
        for t in targets:
            if t not in ready:
                results[t.name] = {k: FAIL for k, _, _ in metric_rows(args)}
                continue
            print(f"[{t.name}] {t.version}: measuring…", flush=True)
            t0 = time.perf_counter()
            bench(t, args, tmp_root, marker, results.setdefault(t.name, {}), notes)
            brief = {k: round(v, 4) if isinstance(v, float) else v
                     for k, v in results[t.name].items() if k != "kill_samples"}
            print(f"[{t.name}] done in {time.perf_counter() - t0:.0f} s: {brief}", flush=True)
    except KeyboardInterrupt:
        notes.append("interrupted: the remaining cells were not measured")
        for t in targets:
            results.setdefault(t.name, {})
    finally:
        kill_leftovers(Run.LIVE, marker)  # only after an interrupted stop
    # Raw numbers (kill samples included) beside the table, for a closer look at a distribution.
    raw = {"started": started, "versions": {t.name: t.version for t in targets},
           "args": {k: v for k, v in vars(args).items() if k != "out"}, "results": results, "notes": notes}
    write_results(args.out, report(targets, results, notes, args, started), raw, tmp_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
