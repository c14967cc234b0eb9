"""Requests failed and latency during rolling reloads of 8 workers under load: gcircusd vs Circus 0.19.0.

    .venv/bin/python benchmarks/run_reload.py [--only gcircusd,circus] [--workers 8] [--clients 16]
                                              [--duration 24] [--reloads 4] [--work 0.01] [--timeout 5]

Both daemons read the same ini file: one `[socket:web]` on a free 127.0.0.1 port and one `[watcher:web]` running
benchmarks/_reload_app.py (stdlib HTTP/1.0 server on `$(circus.sockets.web)`, `use_sockets = true`, finishes its
requests in flight on SIGTERM). N client threads send `GET /` over fresh connections (no keep-alive), each with a
timeout; during the load `reload web --waiting` (graceful: new processes first, then the old ones get SIGTERM) is
sent with each daemon's own ctl (gcircusctl / circusctl) every duration/(reloads+1) seconds. A request fails on a
refused or reset connection, a timeout, or anything but `200 OK`. Prints a Markdown table; writes it to
benchmarks/results/reload.md.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from harness import BENCH_DIR, RESULTS, TARGETS, circus_section, free_endpoint, free_port, launch, percentile

APP = BENCH_DIR / "_reload_app.py"


def write_ini(tmp: Path, workers: int, work: float) -> tuple[Path, str, int]:
    endpoint = free_endpoint()
    port = free_port()
    path = tmp / "reload.ini"
    path.write_text(
        circus_section(endpoint)
        + "[watcher:web]\n"
        f"cmd = {sys.executable} {APP} $(circus.sockets.web) {work}\n"
        "use_sockets = true\n"
        f"numprocesses = {workers}\n"
        "graceful_timeout = 15\n"
        "\n"
        "[socket:web]\n"
        "host = 127.0.0.1\n"
        f"port = {port}\n"
    )
    return path, endpoint, port


def workers_of(daemon: psutil.Process) -> list[int]:
    out = []
    for child in daemon.children(recursive=True):
        try:
            if str(APP) in child.cmdline():
                out.append(child.pid)
        except psutil.Error:
            pass
    return out


def request(port: int, timeout: float) -> tuple[bool, float, str]:
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
        ok = data.startswith(b"HTTP/1.0 200 OK")
        return ok, time.perf_counter() - start, "" if ok else f"bad reply {data[:40]!r}"
    except OSError as exc:
        return False, time.perf_counter() - start, type(exc).__name__


def run_one(name: str, args, log: Path) -> dict:
    target = TARGETS[name]
    target.prepare(log)
    tmp = Path(tempfile.mkdtemp(prefix=f"reload-{name}-"))
    ini, endpoint, port = write_ini(tmp, args.workers, args.work)
    proc = launch(target.argv(ini), tmp, tmp / "daemon.log")
    result = {"name": name, "version": target.version, "tmp": str(tmp)}
    try:
        deadline = time.monotonic() + 30
        while len(workers_of(proc)) < args.workers or not request(port, 2)[0]:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name}: workers did not come up; see {tmp}/daemon.log")
            time.sleep(0.1)
        time.sleep(1.0)
        first = set(workers_of(proc))

        stop = threading.Event()
        samples: list[list] = [[] for _ in range(args.clients)]

        def client(i: int) -> None:
            while not stop.is_set():
                samples[i].append(request(port, args.timeout))
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        reload_times, reload_errors = [], []
        gap = args.duration / (args.reloads + 1)
        for k in range(args.reloads):
            time.sleep(max(0.0, t0 + gap * (k + 1) - time.monotonic()))
            r0 = time.monotonic()
            done = subprocess.run([str(target.ctl), "--endpoint", endpoint, "--timeout", "60", "reload", "web",
                                   "--waiting"],
                                  capture_output=True, text=True, timeout=120)
            reload_times.append(time.monotonic() - r0)
            if done.returncode != 0:
                reload_errors.append((done.stdout + done.stderr).strip()[:200])
        time.sleep(max(0.0, t0 + args.duration - time.monotonic()))
        stop.set()
        for t in threads:
            t.join(args.timeout + 5)
        elapsed = time.monotonic() - t0
        last = set(workers_of(proc))
        flat = [s for per in samples for s in per]
        lat = [s[1] for s in flat if s[0]]
        errors: dict[str, int] = {}
        for ok, _, why in flat:
            if not ok:
                errors[why] = errors.get(why, 0) + 1
        result.update(total=len(flat), failed=sum(not s[0] for s in flat), errors=errors,
                      p50=percentile(lat, 50) * 1000, p99=percentile(lat, 99) * 1000,
                      max=max(lat) * 1000 if lat else float("nan"), rps=len(flat) / elapsed,
                      reloads=len(reload_times), reload_secs=reload_times, reload_errors=reload_errors,
                      replaced=len(first - last), workers_end=len(last))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except psutil.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    return result


def table(results: list[dict], args) -> str:
    lines = ["| daemon | requests | failed | p50 ms | p99 ms | max ms | req/s | reloads (s each) | workers replaced |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['name']} {r['version']} | fail: {r['error']} |||||||| ")
            continue
        secs = ", ".join(f"{s:.1f}" for s in r["reload_secs"])
        lines.append(f"| {r['name']} {r['version']} | {r['total']} | {r['failed']} | {r['p50']:.1f} | "
                     f"{r['p99']:.1f} | {r['max']:.1f} | {r['rps']:.0f} | {r['reloads']} ({secs}) | "
                     f"{r['replaced']}/{args.workers} |")
    notes = [f"{args.workers} workers, {args.clients} client threads, no keep-alive, {args.work * 1000:.0f} ms of "
             f"work per request, {args.timeout:.0f} s timeout, {args.duration:.0f} s of load, {args.reloads} "
             f"`reload web --waiting`."]
    for r in results:
        if r.get("errors"):
            notes.append(f"{r['name']} failures: " + ", ".join(f"{k or '?'} x{v}" for k, v in r["errors"].items()))
        if r.get("reload_errors"):
            notes.append(f"{r['name']} reload errors: " + "; ".join(r["reload_errors"]))
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="gcircusd,circus")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=24.0)
    p.add_argument("--reloads", type=int, default=4)
    p.add_argument("--work", type=float, default=0.01)
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args()
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "reload-install.log"
    results = []
    for name in args.only.split(","):
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            results.append(run_one(name, args, log))
        except Exception as exc:  # noqa: BLE001 - report the failure, measure the others
            results.append({"name": name, "version": getattr(TARGETS.get(name), "version", "?"),
                            "error": str(exc)})
    text = table(results, args)
    print(text)
    for r in results:
        if "tmp" in r:
            print(f"{r['name']}: config and log in {r['tmp']}", file=sys.stderr)
    (RESULTS / "reload.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
