#!/usr/bin/env python3
"""Scale benchmark: the cost curve of gcircusd, Circus 0.19 and supervisord 4.3 from 1,000 to 10,000 processes.

Run with the project venv:  .venv/bin/python benchmarks/run_scale.py   (see benchmarks/README.md)

For each N (--ns) and workload (`sleep`: N × /bin/sleep; `files`: the same with the stdout of every process
to a FileStream, one pipe per process), each supervisor runs N processes and the runner measures, in one daemon's
life: cold start to all running (argv exec'd) and the control channel's round trip meanwhile; idle CPU, RSS and open
fds over a quiet window; `status` and `list work` with 1 and 50 clients; `stats work`; kill -9 → replacement running
(median, p99) and the reap event's arrival; a mass restart (`restart work`) and the control round trip meanwhile;
SIGTERM → all gone. Then, for the sleep workload, a second daemon with the stats channel on at its default interval:
its CPU over the window and the control round trip meanwhile (gcircusd also logs each sample's longest hub pause).
Every wait is bounded by --time-limit: a supervisor that does not finish reads `timeout` (its other cells `—`).
The machine's load average is recorded before each daemon starts.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

from _control_clients import sample_concurrent, sample_serial
from _scale import (
    WORKLOADS,
    Children,
    Control,
    LatencySampler,
    NewChildWatch,
    circus_ini,
    cpu_seconds,
    direct_children,
    open_fds,
    start_daemon,
    start_ticks,
    stop_and_time,
    supervisord_conf,
)
from harness import (
    FAIL,
    RESULTS,
    TARGETS,
    TIMEOUT,
    DaemonDied,
    EventListener,
    Timeout,
    ini_value,
    kill_pids,
    machine,
    new_marker,
    percentile,
    prepare_targets,
    rss_kib,
    start_runner,
    wait_until,
    write_results,
)

SAMPLE_LINE = re.compile(rb"stats sample: (\d+) processes in ([\d.]+) ms \(longest hub pause ([\d.]+) ms")


def command(target, tmp: Path, n: int, marker: str, workload: str, statsd: bool = False) -> list[str]:
    if target.name == "supervisord":
        return target.argv(supervisord_conf(tmp, n, marker, workload))
    argv = target.argv(circus_ini(tmp, n, marker, workload, statsd))
    return argv[:1] + ["--log-level", "debug"] + argv[1:] if statsd and target.name == "gcircusd" else argv


def p50_p99(samples: list[float], scale: float = 1000.0) -> dict:
    if not samples:
        return {}
    return {"p50": statistics.median(samples) * scale, "p99": percentile(samples, 99) * scale,
            "max": max(samples) * scale, "n": len(samples)}


class Daemon:
    """One supervisor with N processes: launched on entry, stopped (and timed) on exit, whatever happened."""

    def __init__(self, target, n: int, workload: str, args, tmp_root: Path, marker: str, statsd: bool = False):
        self.target, self.n, self.args, self.marker = target, n, args, marker
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}-{n}-{workload}-", dir=tmp_root))
        self.argv = command(target, self.tmp, n, marker, workload, statsd)
        self.endpoint = None if target.name == "supervisord" else ini_value(self.tmp / "circus.ini", "endpoint")
        self.stop_seconds: float | str | None = None

    def __enter__(self) -> Daemon:
        self.load = os.getloadavg()[0]
        self.t_launch = time.perf_counter()
        self.proc = start_daemon(self.argv, self.tmp)
        self.children = Children(self.proc.pid, self.marker)
        self.control = Control(self.target.name, self.tmp, self.endpoint)
        return self

    def __exit__(self, *exc) -> None:
        self.control.close()
        died = self.proc.poll() is not None
        seconds = stop_and_time(self.proc, self.args.time_limit)
        self.stop_seconds = FAIL if died else TIMEOUT if seconds is None else seconds

    def wait_running(self, replacing: set[int] = frozenset()) -> float:
        """Seconds until N workload children run; with `replacing`, once each of those processes is gone too."""
        old = {pid: start_ticks(pid) for pid in replacing}
        t0 = time.perf_counter()
        interval = 0.02 if self.n <= 1000 else 0.1
        wait_until(lambda: self.children.replaced(old) and len(self.children.workload()) >= self.n, self.proc,
                   self.args.time_limit, interval)
        return time.perf_counter() - t0

    def log_tail(self) -> str:
        try:
            return " ⏎ ".join((self.tmp / "daemon.log").read_text(errors="replace").splitlines()[-4:])[-500:]
        except OSError:
            return ""


# ---- the phases --------------------------------------------------------------------------------------------------

def cold_start(d: Daemon, res: dict) -> None:
    sampler = LatencySampler(d.control)
    try:
        d.wait_running()
        res["cold"] = time.perf_counter() - d.t_launch
    finally:
        res["ctl_during_start"] = p50_p99(sampler.stop())


def idle(d: Daemon, res: dict) -> None:
    time.sleep(2)  # start-up work settles
    pids = [d.proc.pid, *(direct_children(d.proc.pid) - d.children.workload())]  # helpers (circusd-stats...)
    c0, t0 = cpu_seconds(pids), time.perf_counter()
    time.sleep(d.args.idle_secs)
    res["idle_cpu"] = 100 * (cpu_seconds(pids) - c0) / (time.perf_counter() - t0)
    if d.proc.poll() is not None:
        raise DaemonDied(f"daemon exited with code {d.proc.returncode}")
    res["rss"] = sum(rss_kib(pid) for pid in pids if os.path.exists(f"/proc/{pid}")) / 1024
    res["fds"] = open_fds(d.proc.pid)
    with open(f"/proc/{d.proc.pid}/maps") as f:
        res["maps"] = sum(1 for _ in f)  # vm.max_map_count bounds this, per process


def control_latency(d: Daemon, res: dict) -> None:
    budget, clients = d.args.budget, d.args.clients
    for op in ("status", "list_work"):
        call = getattr(d.control, op)
        res[f"{op}_1"] = p50_p99(sample_serial(call, d.args.reps, budget, warmup=3))
        samples, _, errors = sample_concurrent(d.control.connect, call, clients, d.args.reps_each, budget)
        res[f"{op}_{clients}"] = p50_p99(samples)


def stats_command(d: Daemon, res: dict) -> None:
    """`stats work` (the watcher's processes), three times; the median round trip."""
    if d.target.name == "supervisord":
        return
    control = Control(d.target.name, d.tmp, d.endpoint, timeout=d.args.time_limit)
    try:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            control.client.call("stats", name="work")
            times.append(time.perf_counter() - t0)
        res["stats_cmd"] = statistics.median(times) * 1000
    finally:
        control.close()


def kill_test(d: Daemon, res: dict) -> None:
    """SIGKILL one child `--kill-reps` times, a random 1.1-1.6 s apart (beyond gcircusd's 1 s flapping window);
    time until a new direct child runs the workload, and until the victim's reap event arrives."""
    rng = random.Random(d.args.seed)
    listener = EventListener(ini_value(d.tmp / "circus.ini", "pubsub_endpoint")) if d.endpoint else None
    replaced, reaped = [], []
    try:
        time.sleep(0.5)  # the subscription is live
        for _ in range(d.args.kill_reps):
            d.wait_running()
            time.sleep(rng.uniform(d.args.kill_gap_min, d.args.kill_gap))
            victim = rng.choice(sorted(d.children.workload()))
            d.children.forget(victim)
            watch = NewChildWatch(d.children)
            t_wall, t0 = time.time(), time.perf_counter()
            kill_pids([victim])
            wait_until(lambda: watch.found() is not None, d.proc, d.args.time_limit, 0.0005)
            replaced.append(time.perf_counter() - t0)
            d.children.dead.discard(victim)  # reaped by now (before its replacement): its pid may come back
            event = listener and listener.wait(
                lambda topic, msg, v=victim: topic.endswith(".reap") and msg.get("process_pid") == v, 10)
            if event:
                reaped.append(event[0] - t_wall)
    finally:
        if listener:
            listener.close()
    res["replace"] = p50_p99(replaced)
    res["reap_event"] = p50_p99(reaped)


def mass_restart(d: Daemon, res: dict) -> None:
    before = d.children.workload()
    sampler = LatencySampler(d.control)
    time.sleep(0.3)  # the sampler's first answer: its samples cover the restart
    try:
        t0 = time.perf_counter()
        if d.target.name == "supervisord":
            proxy = d.control.connect().proxy
            threading.Thread(target=lambda: (proxy.supervisor.stopProcessGroup("work", True),
                                             proxy.supervisor.startProcessGroup("work", False)),
                             daemon=True).start()
        else:
            d.control.client.call("restart", name="work")
        d.wait_running(replacing=before)
        res["restart"] = time.perf_counter() - t0
    finally:
        res["ctl_during_restart"] = p50_p99(sampler.stop())


PHASES = {"idle": idle, "control": control_latency, "stats": stats_command, "kill": kill_test, "restart": mass_restart}


def measure(target, n: int, workload: str, args, tmp_root: Path, marker: str, notes: list[str]) -> dict:
    """Every metric of one supervisor at one N; a phase that fails or times out costs only its own cells."""
    res: dict = {}
    d = Daemon(target, n, workload, args, tmp_root, marker)
    with d:
        res["load"] = d.load
        try:
            cold_start(d, res)
        except Exception as exc:  # noqa: BLE001 - the daemon did not get there: nothing else to measure
            res["cold"] = TIMEOUT if isinstance(exc, Timeout) else FAIL
            notes.append(f"{target.name} N={n} {workload}, cold start: {exc} — log: {d.log_tail()}")
            return res
        for name in args.phases:
            phase = PHASES[name]
            try:
                phase(d, res)
            except Exception as exc:  # noqa: BLE001
                notes.append(f"{target.name} N={n} {workload}, {name}: {type(exc).__name__}: {exc}")
                res.setdefault(name, TIMEOUT if isinstance(exc, Timeout) else FAIL)
                if d.proc.poll() is not None:
                    break
    res["stop"] = d.stop_seconds
    return res


def stats_channel(target, n: int, args, tmp_root: Path, marker: str, notes: list[str]) -> dict:
    """A daemon with the stats channel on (default interval) and one subscriber: its CPU (helpers included) over
    the window, the control round trip meanwhile, and gcircusd's own longest hub pause per sample."""
    res: dict = {}
    d = Daemon(target, n, "sleep", args, tmp_root, marker, statsd=True)
    with d:
        res["load"] = d.load
        try:
            d.wait_running()
            sub = zmq.Context.instance().socket(zmq.SUB)
            sub.linger, sub.rcvhwm = 0, 0
            sub.setsockopt(zmq.SUBSCRIBE, b"stat.")
            sub.connect(ini_value(d.tmp / "circus.ini", "stats_endpoint"))
            time.sleep(3)
            offset = (d.tmp / "daemon.log").stat().st_size
            pids = [d.proc.pid, *(direct_children(d.proc.pid) - d.children.workload())]
            c0, t0, messages = cpu_seconds(pids), time.perf_counter(), 0
            sampler = LatencySampler(d.control, interval=0.01)
            while time.perf_counter() - t0 < args.idle_secs:
                if sub.poll(100):
                    sub.recv_multipart()
                    messages += 1
            res["ctl"] = p50_p99(sampler.stop())
            res["cpu"] = 100 * (cpu_seconds(pids) - c0) / (time.perf_counter() - t0)
            res["messages_per_s"] = messages / (time.perf_counter() - t0)
            sub.close()
            with open(d.tmp / "daemon.log", "rb") as f:
                f.seek(offset)
                pauses = [float(m.group(3)) for m in SAMPLE_LINE.finditer(f.read())]
            res["pause_max"] = max(pauses) if pauses else None
        except Exception as exc:  # noqa: BLE001
            res["cpu"] = TIMEOUT if isinstance(exc, Timeout) else FAIL
            notes.append(f"{target.name} N={n}, stats channel: {type(exc).__name__}: {exc}")
    return res


# ---- the report --------------------------------------------------------------------------------------------------

def _num(value, digits: int = 2) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "—"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"


def _cell(res: dict, key: str, sub: str | None = None, digits: int = 2) -> str:
    value = res.get(key)
    if sub is not None:
        value = value.get(sub) if isinstance(value, dict) else value if isinstance(value, str) else None
    return _num(value, digits)


ROWS = [
    ("load average (1 min) at start", "load", None),
    ("cold start → all running (s)", "cold", None),
    ("control round trip during the start, p99 (ms)", "ctl_during_start", "p99"),
    ("idle CPU (% of a core)", "idle_cpu", None),
    ("RSS (MiB, helpers included)", "rss", None),
    ("open fds of the daemon", "fds", None),
    ("memory maps of the daemon (vm.max_map_count)", "maps", None),
    ("`list work`, 1 client, p99 (ms)", "list_work_1", "p99"),
    ("`list work`, 50 clients, p99 (ms)", "list_work_50", "p99"),
    ("`status`, 1 client, p99 (ms)", "status_1", "p99"),
    ("`status`, 50 clients, p99 (ms)", "status_50", "p99"),
    ("`stats work` (ms)", "stats_cmd", None),
    ("kill -9 → replacement exec'd, median (ms)", "replace", "p50"),
    ("kill -9 → replacement exec'd, p99 (ms)", "replace", "p99"),
    ("kill -9 → reap event received, median (ms)", "reap_event", "p50"),
    ("mass restart → all N new running (s)", "restart", None),
    ("control round trip during the restart, p99 (ms)", "ctl_during_restart", "p99"),
    ("SIGTERM → all gone (s)", "stop", None),
]
STATS_ROWS = [
    ("stats channel: daemon CPU (% of a core)", "cpu", None),
    ("stats channel: control round trip p99 (ms)", "ctl", "p99"),
    ("stats channel: control round trip max (ms)", "ctl", "max"),
    ("stats channel: longest hub pause per sample (ms, gcircusd's log)", "pause_max", None),
    ("stats channel: messages/s received", "messages_per_s", None),
]


def table(columns: list[tuple[str, dict]], rows) -> list[str]:
    out = ["| metric | " + " | ".join(name for name, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    for label, key, sub in rows:
        out.append(f"| {label} | " + " | ".join(_cell(res, key, sub) for _, res in columns) + " |")
    return out


def report(results: dict, notes: list[str], args, started: str, versions: str) -> str:
    out = [f"## Scale benchmark ({started})", "", f"Machine: {machine()}  ", f"Versions: {versions}  ",
           f"Idle window {args.idle_secs:g} s; {args.kill_reps} kills 1.1–1.6 s apart; time limit "
           f"{args.time_limit:g} s per wait; `timeout`: not done within it, `fail`: see the notes, `—`: not measured.",
           ""]
    for workload in args.workloads:
        cols = [(f"{t} {n // 1000 if n % 1000 == 0 else n}{'k' if n % 1000 == 0 else ''}", res)
                for (t, n, w), res in results.items() if w == workload]
        if cols:
            out += [f"### workload `{workload}`", "", *table(cols, ROWS), ""]
    stats_cols = [(f"{t} {n}", res) for (t, n, w), res in results.items() if w == "stats"]
    if stats_cols:
        out += ["### stats channel (sleep workload, default interval, one subscriber)", "",
                *table(stats_cols, STATS_ROWS), ""]
    if notes:
        out += ["Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="gcircusd,circus,supervisord", help="comma-separated supervisors")
    p.add_argument("--ns", default="1000,3000,10000", help="process counts, comma-separated")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="sleep, files (FileStream on every process)")
    p.add_argument("--phases", default=",".join(PHASES),
                   help="what to measure after the cold start (and before the stop), from: " + ",".join(PHASES))
    p.add_argument("--no-stats-channel", dest="stats_channel", action="store_false",
                   help="skip the runs with the stats channel on")
    p.add_argument("--idle-secs", type=float, default=30.0, help="idle (and stats channel) window, s (30)")
    p.add_argument("--kill-reps", type=int, default=20, help="kills in the replacement test (20)")
    p.add_argument("--kill-gap-min", type=float, default=1.1)
    p.add_argument("--kill-gap", type=float, default=1.6)
    p.add_argument("--reps", type=int, default=300, help="sequential calls per 1-client cell (300)")
    p.add_argument("--reps-each", type=int, default=20, help="calls per client with 50 clients (20)")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--budget", type=float, default=8.0, help="max seconds per control cell (8)")
    p.add_argument("--time-limit", type=float, default=120.0, help="max seconds of any one wait (120)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", type=Path, default=RESULTS / "scale.md")
    p.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                   help="measure nothing: print one table from the .json files of earlier runs (in this order)")
    a = p.parse_args(argv)
    a.targets = [t for t in a.only.split(",") if t]
    a.ns = [int(n) for n in a.ns.split(",") if n]
    a.workloads = [w for w in a.workloads.split(",") if w]
    a.phases = [x for x in a.phases.split(",") if x]
    if bad := ([t for t in a.targets if t not in TARGETS] + [w for w in a.workloads if w not in WORKLOADS]
               + [x for x in a.phases if x not in PHASES]):
        p.error(f"unknown: {', '.join(bad)}")
    return a


def merged_report(args) -> int:
    """One table from earlier runs' .json files (runs of different supervisors, or taken at different times)."""
    results: dict = {}
    notes: list[str] = []
    started = []
    for path in args.report:
        raw = json.loads(path.read_text())
        started.append(raw["started"])
        notes += raw.get("notes", [])
        for key, res in raw["results"].items():
            target, n, workload = key.split(" ")
            results[target, int(n), workload] = res
    args.workloads = list(WORKLOADS)
    order = list(TARGETS)
    results = dict(sorted(results.items(), key=lambda item: (order.index(item[0][0]), item[0][1])))
    print(report(results, notes, args, " and ".join(started), "see each run's .json"))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        return merged_report(args)
    started, tmp_root = start_runner("gcircus-scale-")
    notes: list[str] = []
    targets = prepare_targets([TARGETS[t] for t in args.targets], tmp_root, notes)
    results: dict = {}
    try:
        for n in args.ns:
            for target in targets:
                for workload in args.workloads:
                    print(f"[{target.name}] N={n} {workload}…", flush=True)
                    res = results[target.name, n, workload] = measure(
                        target, n, workload, args, tmp_root, new_marker(77_700_000), notes)
                    print(f"  {res}", flush=True)
                if args.stats_channel and target.name != "supervisord":
                    print(f"[{target.name}] N={n} stats channel…", flush=True)
                    res = results[target.name, n, "stats"] = stats_channel(
                        target, n, args, tmp_root, new_marker(77_700_000), notes)
                    print(f"  {res}", flush=True)
    except KeyboardInterrupt:
        notes.append("interrupted: the remaining cells were not measured")
    versions = ", ".join(f"{t.name} {t.version}" for t in targets)
    raw = {"started": started, "args": {k: str(v) for k, v in vars(args).items()},
           "results": {f"{t} {n} {w}": r for (t, n, w), r in results.items()}, "notes": notes}
    write_results(args.out, report(results, notes, args, started, versions), raw, tmp_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
