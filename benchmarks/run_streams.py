#!/usr/bin/env python3
"""Output-stream benchmark: how fast and how faithfully child output reaches a FileStream.

Run with the project venv:  .venv/bin/python benchmarks/run_streams.py   (see benchmarks/README.md)

Cases (one row each), the same deterministic line data for every target:

* a: one child writing as fast as it can into a FileStream;
* b: the same with size rotation every 8 MiB (backups kept, concatenated oldest first for the check);
* c: two children of one watcher writing into one file.

Targets (columns): a plain Python 64 KiB pipe-to-file copier (the practical limit), gcircusd, Circus
0.19.0 and supervisord 4.3.0. For each: MB/s (MB = 2^20 bytes) from the go signal to the writers
until the file(s) hold every byte, the daemon's CPU seconds (user+system, all threads) in that
window, and a byte-exact / whole-lines check of the captured file(s).

A slow or stuck target costs its timeouts only; every daemon is stopped and every writer killed
(by pid) at the end, on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from _streams import Lines, check, cut_at_line, total_size
from harness import (
    BENCH_DIR,
    RESULTS,
    TARGETS,
    DaemonDied,
    Target,
    Timeout,
    WorkloadScanner,
    circus_section,
    kill_leftovers,
    kill_pids,
    launch,
    log_tail,
    machine,
    marked_processes,
    new_marker,
    prepare_targets,
    start_runner,
    stop_daemon,
    supervisord_section,
    write_results,
)

ROTATE_BYTES = 8 << 20
STREAM_NAME = "stream.log"
POLL = 0.02  # s between size polls while waiting for the last byte (the timing resolution)
CONFIRM = 0.1  # s after reaching the size: it must not have moved (no late extra bytes)
READY_TIMEOUT = 60.0  # s from launch until the writers are mapped and waiting
STALL_TIMEOUT = 20.0  # s without any growth of the output: the target is stuck
MIN_RATE = 4 << 20  # bytes/s: a case may take at most size / MIN_RATE + 60 s
WRITER = BENCH_DIR / "_stream_writer.py"
PLAIN = BENCH_DIR / "_stream_plain.py"
CASES = {
    "a": "one child → FileStream",
    "b": "one child → FileStream, rotation every 8 MiB",
    "c": "two children → one FileStream",
}
TARGET_ORDER = ("plain", "gcircusd", "circus", "supervisord")


# ---- configs ------------------------------------------------------------------------------------

class Plain(Target):
    """Not a supervisor: _stream_plain.py spawns the writers itself and copies their pipes."""

    def __init__(self):
        super().__init__("plain")

    def prepare(self, log: Path) -> None:
        self.version = "64 KiB reads, Python " + sys.version.split()[0]


def writer_argv(spec: Path, wid: str, marker: str) -> list[str]:
    return [sys.executable, str(WRITER), str(spec), wid, marker]


def circus_stream_ini(run: StreamRun) -> Path:
    """One ini for circusd and gcircusd: the writer watcher with a FileStream on stdout."""
    path = run.dir / "circus.ini"
    args = " ".join(writer_argv(run.spec_path, "$(circus.wid)", run.marker)[1:])
    lines = [
        "[watcher:writer]",
        f"cmd = {sys.executable}",
        f"args = {args}",
        f"numprocesses = {run.nwriters}",
        "respawn = false",
        "stdout_stream.class = FileStream",
        f"stdout_stream.filename = {run.out / STREAM_NAME}",
    ]
    if run.rotate:
        lines += [f"stdout_stream.max_bytes = {ROTATE_BYTES}", f"stdout_stream.backup_count = {run.backups}"]
    path.write_text(circus_section() + "\n".join(lines) + "\n")
    return path


def supervisord_conf(run: StreamRun) -> Path:
    """The same program for supervisord: numprocs copies, stdout to one logfile, stderr apart."""
    conf = run.dir / "supervisord.conf"
    cmd = " ".join(writer_argv(run.spec_path, "%(process_num)d", run.marker))
    conf.write_text(
        supervisord_section(run.dir)
        +         "[program:writer]\n"
        f"command = {cmd}\n"
        f"numprocs = {run.nwriters}\n"
        "numprocs_start = 1\n"
        "process_name = %(program_name)s_%(process_num)d\n"
        "autostart = true\n"
        "autorestart = false\n"
        "startsecs = 0\n"
        "redirect_stderr = false\n"
        f"stdout_logfile = {run.out / STREAM_NAME}\n"
        f"stdout_logfile_maxbytes = {ROTATE_BYTES if run.rotate else 0}\n"
        f"stdout_logfile_backups = {run.backups if run.rotate else 0}\n"
        f"stderr_logfile = {run.dir}/writer-%(process_num)d.err\n"
        "stderr_logfile_maxbytes = 0\n"
    )
    return conf


def daemon_argv(target: Target, run: StreamRun) -> list[str]:
    if target.name == "plain":
        return [sys.executable, str(PLAIN), str(run.spec_path), run.case, str(run.out / STREAM_NAME),
                str(ROTATE_BYTES), str(run.nwriters), str(WRITER), run.marker]
    if target.name == "supervisord":
        return target.argv(supervisord_conf(run))
    return target.argv(circus_stream_ini(run))


# ---- one measurement ----------------------------------------------------------------------------

class StreamRun:
    """One target on one case: launch, go, wait for the last byte, stop, check (a context manager)."""

    LIVE: set[StreamRun] = set()

    def __init__(self, target: Target, case: str, data: dict, tmp_root: Path, marker: str):
        self.target, self.case, self.marker = target, case, marker
        self.dir = Path(tempfile.mkdtemp(prefix=f"{case}-{target.name}-", dir=tmp_root))
        self.out = self.dir / "out"
        self.out.mkdir()
        self.log = self.dir / "daemon.log"
        self.writers = data["writers"]  # wid -> (path, bytes, lines)
        self.nwriters = len(self.writers)
        self.expected = sum(b for _, b, _ in self.writers.values())
        self.rotate = case == "b"
        self.backups = self.expected // ROTATE_BYTES + 64
        self.spec_path = self.dir / "spec.json"
        self.spec_path.write_text(json.dumps({
            "writers": {str(w): [str(p), b] for w, (p, b, _) in self.writers.items()},
            "ready": str(self.dir / "ready-%s"), "go": str(self.dir / "go"),
            "times": str(self.dir / "times-%s"), "linger": 900,
        }))
        self.daemon: psutil.Popen | None = None

    def __enter__(self) -> StreamRun:
        argv = daemon_argv(self.target, self)
        self.daemon = launch(argv, self.dir, self.log)
        self.scanner = WorkloadScanner(self.daemon.pid, self.marker)
        StreamRun.LIVE.add(self)
        return self

    def __exit__(self, *exc) -> None:
        if self.daemon is not None:
            stop_daemon(self.daemon, self.scanner, timeout=30)
        kill_pids(marked_processes(self.marker))
        StreamRun.LIVE.discard(self)

    def alive(self) -> None:
        if self.daemon.poll() is not None:
            raise DaemonDied(f"daemon exited with code {self.daemon.returncode}")

    def cpu(self) -> float:
        t = psutil.Process(self.daemon.pid).cpu_times()
        return t.user + t.system

    def measure(self) -> dict:
        """Wall seconds and daemon CPU seconds from the go signal to the last byte on disk."""
        t0 = time.monotonic()
        ready = [self.dir / f"ready-{w}" for w in self.writers]
        while not all(p.exists() for p in ready):
            self.alive()
            if time.monotonic() - t0 > READY_TIMEOUT:
                raise Timeout(f"writers not ready after {READY_TIMEOUT:.0f}s")
            time.sleep(0.02)
        time.sleep(0.5)  # the daemon finishes its start-up work outside the window
        self.alive()
        c0, t_go = self.cpu(), time.monotonic()
        (self.dir / "go").touch()
        cap = self.expected / MIN_RATE + 60
        last_size, last_growth = 0, t_go
        res: dict = {"expected": self.expected}
        while True:
            time.sleep(POLL)
            now = time.monotonic()
            size = total_size(self.out)
            if size >= self.expected:
                c1 = self.cpu()
                time.sleep(CONFIRM)
                if total_size(self.out) == size:
                    res.update(wall=now - t_go, cpu=c1 - c0, got=size)
                    break
                continue
            if size != last_size:
                last_size, last_growth = size, now
            self.alive()
            if now - last_growth > STALL_TIMEOUT or now - t_go > cap:
                res.update(got=size, cpu=self.cpu() - c0, wall=now - t_go)
                why = "stalled" if now - last_growth > STALL_TIMEOUT else "too slow"
                raise Incomplete(f"{why}: {size / 2**20:.0f} of {self.expected / 2**20:.0f} MB after "
                                 f"{now - t_go:.0f}s", res)
        starts = []
        for w in self.writers:
            try:
                starts.append(float((self.dir / f"times-{w}").read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
        if starts:
            res["first_byte_delay"] = min(starts) - t_go
        return res

    def log_tail(self, lines: int = 4) -> str:
        return log_tail(self.log, lines)


class Incomplete(RuntimeError):
    def __init__(self, msg: str, res: dict):
        super().__init__(msg)
        self.res = res


def bench_one(target: Target, case: str, data: dict, lines: Lines, tmp_root: Path, marker: str,
              notes: list[str], keep: bool = False) -> dict:
    """Measure, stop, check, clean up; never raises except KeyboardInterrupt."""
    os.sync()  # earlier output written back: every target starts with the same page-cache state
    time.sleep(1)
    res: dict = {"load1": os.getloadavg()[0]}
    run = None
    try:
        with StreamRun(target, case, data, tmp_root, marker) as run:
            try:
                res.update(run.measure())
            except Incomplete as exc:
                res.update(exc.res, error=str(exc))
                notes.append(f"{target.name}, case {case}: {exc}" + _tail(run))
            except (Timeout, DaemonDied, psutil.Error, OSError) as exc:
                res["error"] = f"{type(exc).__name__}: {exc}"
                notes.append(f"{target.name}, case {case}: {res['error']}" + _tail(run))
        if "got" in res:
            v = check(run.out, STREAM_NAME, data["writers"], lines)
            res["check"] = v.cell()
            res["ok"] = v.ok
            res["files"] = v.files
            res["verdict"] = {k: getattr(v, k) for k in ("out_bytes", "files", "exact", "split_across_files",
                                                           "broken", "missing", "disorder", "first_diff")}
            if v.notes:
                notes.append(f"{target.name}, case {case}: " + "; ".join(v.notes))
            if not v.exact and v.out_bytes != res["expected"]:
                notes.append(f"{target.name}, case {case}: {v.out_bytes} bytes captured, "
                             f"{res['expected']} sent" + (f", first difference at byte {v.first_diff}"
                                                          if v.first_diff is not None else ""))
    except Exception as exc:  # noqa: BLE001 - a broken target must not stop the other cells
        res.setdefault("error", f"{type(exc).__name__}: {exc}")
        notes.append(f"{target.name}, case {case}: {res['error']}" + (_tail(run) if run else ""))
    finally:
        if run is not None and not keep:
            shutil.rmtree(run.out, ignore_errors=True)  # gigabytes; configs and logs stay
    return res


def _tail(run: StreamRun) -> str:
    tail = run.log_tail()
    return f" — log: {tail}" if tail else ""


# ---- data ---------------------------------------------------------------------------------------

def make_data(lines: Lines, tmp_root: Path, size_mb: int) -> dict[str, dict]:
    """Per case: wid -> (data file, bytes to send, lines). One file per wid, cut at a line end."""
    nbytes = size_mb << 20
    files = {}
    for wid, want in ((1, nbytes), (2, nbytes // 2)):
        path = tmp_root / f"data-w{wid}.bin"
        lines.generate(wid, path, want)
        files[wid] = path
    one = cut_at_line(files[1], nbytes)
    halves = {w: cut_at_line(files[w], nbytes // 2) for w in (1, 2)}
    return {
        "a": {"writers": {1: (files[1], *one)}},
        "b": {"writers": {1: (files[1], *one)}},
        "c": {"writers": {w: (files[w], *halves[w]) for w in (1, 2)}},
    }


# ---- report -------------------------------------------------------------------------------------

def combine(reps: list[dict]) -> dict:
    """The repetition with the median time stands for the cell; a check failure in any one shows."""
    timed = sorted((r for r in reps if "wall" in r and "error" not in r), key=lambda r: r["wall"])
    cell = dict(timed[len(timed) // 2] if timed else reps[-1])
    cell["reps"] = [{k: r.get(k) for k in ("wall", "cpu", "got", "check", "error", "load1")} for r in reps]
    cell["rates"] = [r["got"] / 2**20 / r["wall"] for r in reps if "wall" in r and r.get("got")]
    bad = [r for r in reps if not r.get("ok")]
    if bad:
        v = [r.get("verdict") or {} for r in bad]
        worst = bad[max(range(len(bad)), key=lambda i: (v[i].get("missing", 0), v[i].get("split_across_files", 0)))]
        cell["check"] = worst.get("check", "—") + (f" (in {len(bad)} of {len(reps)} runs)" if len(reps) > 1 else "")
        cell["ok"] = False
    return cell


def rate_cell(res: dict) -> str:
    if "wall" not in res:
        return "fail"
    mb = res.get("got", 0) / 2**20
    rate = f"{mb / res['wall']:.0f}"
    return rate if "error" not in res else f"({rate}, incomplete)"


def cpu_cell(res: dict) -> str:
    if "cpu" not in res or "wall" not in res:
        return "—"
    return f"{res['cpu']:.2f} ({100 * res['cpu'] / res['wall']:.0f} %)"


def report(targets: list[Target], cases: list[str], results: dict, notes: list[str], args, started: str,
           load_before: tuple) -> str:
    names = [t.name for t in targets]
    out = [
        f"## Output streams ({started})",
        "",
        f"Machine: {machine()}  ",
        "Load average before the run: " + " / ".join(f"{x:.2f}" for x in load_before) + " (1 / 5 / 15 min)  ",
        "Versions: " + ", ".join(f"{t.name} {t.version}" for t in targets) + "  ",
        f"Data: {args.size_mb} MiB per case (case c: half from each child), lines of 20–300 bytes, "
        f"sent with 1 MiB os.write calls; median of {args.reps} run(s) per cell. MB = 2^20 bytes. "
        f"Time from the go signal to the last byte in the file(s) (polled every {POLL * 1000:.0f} ms); "
        "CPU = the daemon's user+system seconds in that window (% of one core).",
        "",
    ]
    header = ["case"]
    for n in names:
        header += [f"{n} MB/s", f"{n} CPU s"]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in cases:
        row = [f"{c}: {CASES[c]}"]
        for n in names:
            r = results.get(c, {}).get(n, {})
            row += [rate_cell(r), cpu_cell(r)]
        out.append("| " + " | ".join(row) + " |")
    out += ["", "Byte-exact / whole-lines check of the captured file(s):", ""]
    out += ["| case | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for c in cases:
        cells = [results.get(c, {}).get(n, {}).get("check", "—") for n in names]
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    spread = [f"{c}/{n} " + "–".join(f"{x:.0f}" for x in (min(r["rates"]), max(r["rates"])))
              for c in cases for n in names if len((r := results.get(c, {}).get(n, {})).get("rates", [])) > 1]
    if spread:
        notes = [*notes, f"MB/s range over the {args.reps} runs of each cell (the table shows the median run): "
                 + ", ".join(spread)]
    loads = [f"{c}/{n} {results[c][n]['load1']:.2f}" for c in cases for n in names
             if "load1" in results.get(c, {}).get(n, {})]
    if loads:
        notes = [*notes, "1-min load average before each cell: " + ", ".join(loads)]
    if notes:
        out += ["", "Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


# ---- main ---------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(TARGET_ORDER), help="comma-separated targets, from: "
                   + ",".join(TARGET_ORDER))
    p.add_argument("--cases", default="a,b,c", help="comma-separated cases, from: a,b,c")
    p.add_argument("--quick", action="store_true", help="64 MiB per case, for development")
    p.add_argument("--size-mb", type=int, help="MiB of output per case (default 1536, --quick 64)")
    p.add_argument("--seed", type=int, default=4242, help="seed of the line data")
    p.add_argument("--reps", type=int, help="runs per cell; the median time is reported (default 3, --quick 1)")
    p.add_argument("--keep-output", action="store_true",
                   help="keep the captured files (and the data) in the temp dir for a closer look")
    p.add_argument("--out", type=Path, default=RESULTS / "streams.md")
    a = p.parse_args(argv)
    a.size_mb = a.size_mb or (64 if a.quick else 1536)
    a.reps = a.reps or (1 if a.quick else 3)
    a.targets = [t.strip() for t in a.only.split(",") if t.strip()]
    a.cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    if bad := [t for t in a.targets if t not in TARGET_ORDER]:
        p.error(f"unknown target(s): {', '.join(bad)}")
    if bad := [c for c in a.cases if c not in CASES]:
        p.error(f"unknown case(s): {', '.join(bad)}")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    started, tmp_root = start_runner("gcircus-streams-")
    load_before = os.getloadavg()
    print(f"load average before the run: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}",
          flush=True)
    marker = new_marker(99_960_000)
    all_targets = {"plain": Plain(), **TARGETS}
    targets = [all_targets[n] for n in TARGET_ORDER if n in args.targets]
    results: dict[str, dict] = {c: {} for c in args.cases}
    notes: list[str] = []
    lines = Lines(args.seed)
    try:
        ready = prepare_targets(targets, tmp_root, notes)
        for c in args.cases:
            results[c].update({t.name: {"error": "install failed", "check": "—"} for t in targets if t not in ready})
        t0 = time.perf_counter()
        data = make_data(lines, tmp_root, args.size_mb)
        print(f"data: {args.size_mb} MiB generated in {time.perf_counter() - t0:.1f} s", flush=True)
        for c in args.cases:
            for t in ready:
                reps = []
                for i in range(args.reps):
                    print(f"[{c}/{t.name}] measuring ({i + 1}/{args.reps})…", flush=True)
                    r = bench_one(t, c, data[c], lines, tmp_root, marker, notes, args.keep_output)
                    reps.append(r)
                    print(f"[{c}/{t.name}] {rate_cell(r)} MB/s, CPU {cpu_cell(r)}, {r.get('check', '—')}"
                          + (f" [{r['error']}]" if "error" in r else ""), flush=True)
                    if "wall" not in r:
                        break  # a failed start fails again: do not spend its timeouts twice
                results[c][t.name] = combine(reps)
    except KeyboardInterrupt:
        notes.append("interrupted: the remaining cells were not measured")
    finally:
        kill_leftovers(StreamRun.LIVE, marker)
        if not args.keep_output:
            for f in tmp_root.glob("data-w*.bin"):
                f.unlink()
    raw = {"started": started, "load_before": load_before, "versions": {t.name: t.version for t in targets},
           "size_mb": args.size_mb, "seed": args.seed, "reps": args.reps, "results": results, "notes": notes}
    write_results(args.out, report(targets, args.cases, results, notes, args, started, load_before), raw, tmp_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
