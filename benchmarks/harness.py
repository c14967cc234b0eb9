"""What every benchmark script shares: the supervisors under test, their daemons' lifetime, the runner's set-up and
clean-up, and the statistics and reports.

The run_*.py scripts import this module and never each other, so a script can change its own measurement without
breaking another's. Child programs (_reload_app.py, _stream_*.py) and the control clients (_control_clients.py) stay
in modules of their own: each has one job.

Processes are found and signalled by pid through psutil, never by name, so the runner only ever signals processes it
started itself (the daemons) or processes that carry this run's unique workload marker on their command line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil
import zmq

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
VENVS = BENCH_DIR / ".venvs"
SLEEP = "/bin/sleep"
# gcircusd of the python running the benchmark (the project venv), for the gcircusd-only benchmarks.
GCIRCUSD = [sys.executable, "-m", "gcircus.cli.gcircusd"]

CIRCUS_PIN = "circus==0.19.0"
SUPERVISOR_PIN = "supervisor==4.3.0"

FAIL, TIMEOUT = "fail", "timeout"  # what a report cell reads when its measurement did not finish


# ---- ports, configs -----------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1 (tiny race with the daemon's bind; fine here)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def circus_section(endpoint: str | None = None, **extra: object) -> str:
    """The [circus] section of a benchmark's ini (read by circusd and gcircusd alike): control and pub/sub on free
    ports, statsd and multicast discovery off so that no extra processes or UDP sockets are involved, plus `extra`.
    check_delay is left at its default (5 s), as a real user would have it."""
    lines = ["[circus]", f"endpoint = {endpoint or free_endpoint()}", f"pubsub_endpoint = {free_endpoint()}",
             "statsd = false", "multicast_endpoint ="]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n\n"


def ini_value(path: Path, key: str) -> str:
    """The value of `key` in an ini written by this harness (e.g. the control endpoint of circus.ini)."""
    for line in path.read_text().splitlines():
        if line.split("=", 1)[0].strip() == key:
            return line.split("=", 1)[1].strip()
    raise RuntimeError(f"no {key} in {path.name}")


def supervisord_section(tmp: Path) -> str:
    """supervisord's own sections: foreground, files in `tmp`, XML-RPC on a unix socket there."""
    return (
        "[unix_http_server]\n"
        f"file = {tmp}/supervisor.sock\n"
        "\n"
        "[supervisord]\n"
        "nodaemon = true\n"
        f"logfile = {tmp}/supervisord.log\n"
        f"pidfile = {tmp}/supervisord.pid\n"
        f"childlogdir = {tmp}\n"
        "loglevel = warn\n"
        "\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        "\n"
    )


# ---- the supervisors under test -----------------------------------------------------------------

def _run(argv: list[str], log: Path) -> None:
    with open(log, "ab") as fh:
        subprocess.run(argv, check=True, stdout=fh, stderr=subprocess.STDOUT)


def installed_version(venv: Path, dist: str) -> str:
    """The installed version of ``dist`` in ``venv`` ("" when it is not there)."""
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True, text=True,
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def ensure_venv(name: str, pin: str, log: Path) -> Path:
    """Create ``benchmarks/.venvs/<name>`` with ``pin`` installed, unless it is already there.

    Separate venvs keep Circus's and supervisor's dependencies (tornado, old pyzmq pins, ...) away
    from the project venv, so the gcircusd numbers are not taken with foreign packages loaded.
    """
    venv = VENVS / name
    dist, version = pin.split("==")
    if (venv / "bin" / "python").exists() and installed_version(venv, dist) == version:
        return venv
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(venv)], log)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", pin], log)
    return venv


class Target:
    """One supervisor: ``prepare`` installs it, ``command`` writes a config and returns the argv."""

    def __init__(self, name: str):
        self.name = name
        self.version = "?"

    def prepare(self, log: Path) -> None:
        raise NotImplementedError

    def command(self, tmp: Path, n: int, marker: str) -> list[str]:
        raise NotImplementedError


def circus_ini(tmp: Path, n: int, marker: str) -> Path:
    """A Circus ini for N workload copies on run-time ports."""
    path = tmp / "circus.ini"
    path.write_text(circus_section() + f"[watcher:work]\ncmd = {SLEEP}\nargs = {marker}\nnumprocesses = {n}\n")
    return path


class Circus(Target):
    def __init__(self):
        super().__init__("circus")

    def prepare(self, log: Path) -> None:
        self.venv = ensure_venv("circus", CIRCUS_PIN, log)
        self.version = installed_version(self.venv, "circus") or "?"
        self.ctl = self.venv / "bin" / "circusctl"

    def argv(self, ini: Path) -> list[str]:
        return [str(self.venv / "bin" / "circusd"), "--log-level", "warning", str(ini)]

    def command(self, tmp, n, marker):
        return self.argv(circus_ini(tmp, n, marker))


class GCircus(Target):
    def __init__(self):
        super().__init__("gcircusd")

    def prepare(self, log: Path) -> None:
        """Use the project venv; (re)create it with scripts/_install only if gcircusd is missing."""
        self.exe = REPO / ".venv" / "bin" / "gcircusd"
        self.ctl = REPO / ".venv" / "bin" / "gcircusctl"
        if not self.exe.exists():
            _run(["bash", str(REPO / "scripts" / "_install"), "runtime"], log)
        self.version = installed_version(REPO / ".venv", "gcircus") or "?"
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        if rev:
            self.version += f" @{rev}"

    def argv(self, ini: Path) -> list[str]:
        return [str(self.exe), str(ini)]

    def command(self, tmp, n, marker):
        return self.argv(circus_ini(tmp, n, marker))


class Supervisord(Target):
    def __init__(self):
        super().__init__("supervisord")

    def prepare(self, log: Path) -> None:
        self.venv = ensure_venv("supervisor", SUPERVISOR_PIN, log)
        self.version = installed_version(self.venv, "supervisor") or "?"

    def argv(self, conf: Path) -> list[str]:
        return [str(self.venv / "bin" / "supervisord"), "-n", "-c", str(conf)]

    def command(self, tmp, n, marker):
        """supervisord in the foreground; numprocs + process_name give N copies of one program.

        startsecs=0 makes a child RUNNING at once (no 1 s grace), autorestart brings it back
        after a kill; child output is discarded, like Circus's default.
        """
        conf = tmp / "supervisord.conf"
        conf.write_text(
            supervisord_section(tmp)
            + "[supervisorctl]\n"
            f"serverurl = unix://{tmp}/supervisor.sock\n"
            "\n"
            "[program:work]\n"
            f"command = {SLEEP} {marker}\n"
            f"numprocs = {n}\n"
            "process_name = %(program_name)s_%(process_num)d\n"
            "autostart = true\n"
            "autorestart = true\n"
            "startsecs = 0\n"
            "stdout_logfile = NONE\n"
            "stderr_logfile = NONE\n"
        )
        return self.argv(conf)


TARGETS = {t.name: t for t in (GCircus(), Circus(), Supervisord())}


# ---- processes ----------------------------------------------------------------------------------

class DaemonDied(RuntimeError):
    """The supervisor daemon exited while we were waiting on it."""


class Timeout(RuntimeError):
    """A wait exceeded its deadline; the cell is reported as 'timeout'."""


def failure(exc: BaseException) -> str:
    """The report cell of a measurement that raised."""
    return TIMEOUT if isinstance(exc, Timeout) else FAIL


class WorkloadScanner:
    """Finds the workload children below one daemon.

    A child is workload when its argv is exactly ``[<...>/sleep, marker]``. The marker is unique to
    this run, so leftovers of an earlier, crashed run are never counted. A positive answer is cached
    per pid (argv cannot change back after exec) so that polling 1000 children stays cheap;
    negative answers are not cached because a freshly forked child still shows the daemon's argv
    until it execs.
    """

    def __init__(self, daemon_pid: int, marker: str):
        self.daemon_pid = daemon_pid
        self.marker = marker
        self._known: set[int] = set()
        self._dead: set[int] = set()

    def forget(self, pid: int) -> None:
        """Never count ``pid`` again: we killed it, but it stays a zombie until the daemon reaps it."""
        self._known.discard(pid)
        self._dead.add(pid)

    def is_workload(self, cmdline: list[str]) -> bool:
        return len(cmdline) == 2 and cmdline[0].endswith("sleep") and cmdline[1] == self.marker

    def descendants(self) -> list[int]:
        """All descendant pids of the daemon (psutil does one /proc scan per call)."""
        try:
            return [p.pid for p in psutil.Process(self.daemon_pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def scan(self) -> tuple[set[int], set[int]]:
        """Return (workload pids, other descendant pids) currently below the daemon."""
        work, other = set(), set()
        for pid in self.descendants():
            if pid in self._dead:
                continue
            if pid in self._known:
                work.add(pid)
                continue
            try:
                cmd = psutil.Process(pid).cmdline()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            if self.is_workload(cmd):
                self._known.add(pid)
                work.add(pid)
            else:
                other.add(pid)
        self._known &= work  # forget pids that are gone
        return work, other


def wait_until(cond: Callable[[], bool], daemon: psutil.Popen, timeout: float, interval: float) -> float:
    """Poll ``cond`` until true; return the elapsed seconds.

    Raises DaemonDied if the daemon exits first and Timeout after ``timeout`` seconds, so a broken
    supervisor costs at most ``timeout`` and never hangs the run.
    """
    t0 = time.perf_counter()
    while True:
        if cond():
            return time.perf_counter() - t0
        if daemon.poll() is not None:
            raise DaemonDied(f"daemon exited with code {daemon.returncode}")
        if time.perf_counter() - t0 > timeout:
            raise Timeout(f"not reached in {timeout:.0f}s")
        time.sleep(interval)


def kill_pids(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to each pid, ignoring the ones already gone."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def marked_processes(marker: str) -> list[int]:
    """Every other process on the machine whose argv ends with this run's marker (orphans included)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if len(cmd) >= 2 and cmd[-1] == marker and p.pid != os.getpid():
            out.append(p.pid)
    return out


def stop_daemon(daemon: psutil.Popen, scanner: WorkloadScanner, timeout: float) -> float | None:
    """SIGTERM the daemon and wait for it and all its workload children to go.

    Returns the seconds it took, or None when it did not finish in ``timeout`` (then everything is
    SIGKILLed by pid). Children are snapshotted before the signal because once the daemon is gone
    they are re-parented and can no longer be found through it.
    """
    try:
        known = set(scanner.descendants())
    except psutil.Error:
        known = set()
    if daemon.poll() is not None:
        kill_pids(known | set(marked_processes(scanner.marker)))
        return None
    t0 = time.perf_counter()
    daemon.send_signal(signal.SIGTERM)
    elapsed = None
    # The daemon's exit is watched every 2 ms (a waitpid); its children are scanned only once it is gone (a scan
    # of 1000 pids takes tens of ms: scanned in the loop, they made the figure move in steps of a scan and a pause).
    # A daemon may leave children behind: then the figure is when the last of them is gone (looked at every 10 ms).
    deadline = t0 + timeout
    while daemon.poll() is None and time.perf_counter() < deadline:
        time.sleep(0.002)
    if daemon.poll() is not None:
        elapsed = time.perf_counter() - t0
        alive = [p for p in known if psutil.pid_exists(p) and _not_zombie(p)]
        while alive and time.perf_counter() < deadline:
            time.sleep(0.01)
            alive = [p for p in alive if psutil.pid_exists(p) and _not_zombie(p)]
            elapsed = time.perf_counter() - t0
        if alive:
            elapsed = None
    if daemon.poll() is None:
        daemon.kill()
        try:
            daemon.wait(5)
        except psutil.TimeoutExpired:
            pass
    kill_pids(known | set(marked_processes(scanner.marker)))
    return elapsed


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def launch(argv: list[str], cwd: Path, log: Path) -> psutil.Popen:
    """Start a daemon with its output in `log`, in its own session: a Ctrl-C in the terminal reaches only the
    runner, which then stops the daemon in order instead of leaving it half-killed."""
    with open(log, "wb") as out:
        return psutil.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def log_tail(log: Path, lines: int = 5) -> str:
    """The last lines of a daemon's log on one line, for a report's notes."""
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " ⏎ ".join(text[-lines:])[-600:]


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class Run:
    """One daemon with N workload children, from launch to a guaranteed stop (a context manager).

    ``LIVE`` holds the runs not stopped yet, so that the runner can still kill them if a second Ctrl-C
    interrupts a stop half-way.
    """

    LIVE: set[Run] = set()

    def __init__(self, target: Target, n: int, tmp_root: Path, marker: str):
        self.target, self.n, self.marker = target, n, marker
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}-{n}-", dir=tmp_root))
        self.log = self.tmp / "daemon.log"
        self.daemon: psutil.Popen | None = None
        self.scanner: WorkloadScanner | None = None
        self.stop_seconds: float | None = None
        self.died_early = False

    def __enter__(self) -> Run:
        argv = self.target.command(self.tmp, self.n, self.marker)
        self.t_launch = time.perf_counter()
        self.daemon = launch(argv, self.tmp, self.log)
        self.scanner = WorkloadScanner(self.daemon.pid, self.marker)
        Run.LIVE.add(self)
        return self

    def __exit__(self, *exc) -> None:
        if self.daemon is not None:
            self.died_early = self.daemon.poll() is not None
            self.stop_seconds = stop_daemon(self.daemon, self.scanner, timeout=60 + self.n / 10)
        Run.LIVE.discard(self)

    def stop_cell(self):
        """The stop metric: seconds, or why there is none."""
        if self.died_early:
            return FAIL
        return TIMEOUT if self.stop_seconds is None else self.stop_seconds

    def workload(self) -> set[int]:
        return self.scanner.scan()[0]

    def wait_all_running(self, timeout: float, interval: float = 0.05) -> float:
        """Seconds from launch until N workload children exist (the cold-start metric). The default poll of
        50 ms keeps the cost of scanning 1000 children low."""
        wait_until(lambda: len(self.workload()) >= self.n, self.daemon, timeout, interval)
        return time.perf_counter() - self.t_launch

    def control_endpoint(self) -> str:
        return ini_value(self.tmp / "circus.ini", "endpoint")

    def log_tail(self, lines: int = 5) -> str:
        return log_tail(self.log, lines)


# ---- the runner ---------------------------------------------------------------------------------

def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def start_runner(prefix: str) -> tuple[str, Path]:
    """Set up a runner process; return its start time (for the report) and a fresh temp dir for its files.

    SIGTERM to the runner cleans up like Ctrl-C; the fd limit is raised to the hard limit because 1000 children need
    a few thousand fds in some supervisors, and the daemons inherit it.
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M"), Path(tempfile.mkdtemp(prefix=prefix))


def new_marker(base: int) -> str:
    """The workload's last argument: unique to this invocation, so only our own children ever match it. `base`
    (a large number, one per script) keeps the markers of two benchmarks apart."""
    return f"{base + random.randrange(9999)}.{os.getpid()}"


def prepare_targets(targets: list[Target], tmp_root: Path, notes: list[str]) -> list[Target]:
    """Install each target; return the ones ready (a failed install is noted and skipped)."""
    ready = []
    for t in targets:
        print(f"[{t.name}] preparing…", flush=True)
        try:
            t.prepare(tmp_root / "install.log")
        except Exception as exc:  # noqa: BLE001 - one broken install costs only its own cells
            notes.append(f"{t.name}: install failed: {exc} (see {tmp_root / 'install.log'})")
            continue
        ready.append(t)
    return ready


def kill_leftovers(live: Iterable, marker: str) -> None:
    """After an interrupted stop: kill the daemons still up and every process with the run's marker."""
    for run in list(live):
        if run.daemon is not None and run.daemon.poll() is None:
            run.daemon.kill()
    kill_pids(marked_processes(marker))


def measure_targets(targets: list[Target], tmp_root: Path, marker: str, notes: list[str], measure) -> dict:
    """Run `measure(target, cells)` for each target that installs, filling `cells` (its results); return them all.

    One broken target costs only its own cells (the error goes to `notes`); Ctrl-C keeps what was measured so far;
    whatever still runs the run's `marker` afterwards is killed."""
    results: dict[str, dict] = {}
    try:
        for t in prepare_targets(targets, tmp_root, notes):
            print(f"[{t.name}] {t.version}: measuring…", flush=True)
            try:
                measure(t, results.setdefault(t.name, {}))
            except Exception as exc:  # noqa: BLE001 - one broken target costs only its own cells
                notes.append(f"{t.name}: {type(exc).__name__}: {exc}")
                print(f"  [{t.name}] failed: {exc}", flush=True)
    except KeyboardInterrupt:
        notes.append("interrupted: the remaining cells were not measured")
    finally:
        kill_leftovers(Run.LIVE, marker)
    return results


def stop_gcircusd(daemon, pids: Iterable[int], marker: str) -> None:
    """SIGTERM a single-daemon benchmark's gcircusd (SIGKILL after 60 s), then SIGKILL what is left of its workload:
    only the pids it reported that still run `marker`, so nothing else on the machine is touched."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    for pid in pids:
        try:
            if psutil.Process(pid).cmdline()[-1:] == [marker]:
                os.kill(pid, signal.SIGKILL)
        except (psutil.Error, OSError):
            pass


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; Linux {platform.release()}; "
            f"Python {platform.python_version()}")


def write_results(out: Path, text: str, raw: dict, files_in: Path | None = None) -> None:
    """Print the report and write it to `out`, the raw numbers beside it (`out` with .json)."""
    print("\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"machine": machine(), **raw}, indent=1, default=str) + "\n")
    print(f"written to {out} and .json" + (f" (daemon logs and configs in {files_in})" if files_in else ""))


# ---- statistics ---------------------------------------------------------------------------------

def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN when there are no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def summary(samples: list[float]) -> dict:
    """Count, median, p99 (nearest rank), min and max of latency samples, in seconds."""
    if not samples:
        return {"n": 0}
    return {"n": len(samples), "p50": statistics.median(samples), "p99": percentile(samples, 99),
            "min": min(samples), "max": max(samples)}


class EventListener:
    """A SUB socket on a pubsub endpoint, read by a thread of its own that stamps every event with time.time() on
    arrival (no high-water mark: a benchmark must not lose what it measures)."""

    def __init__(self, endpoint: str):
        self.socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.linger = 0
        self.socket.setsockopt(zmq.SUBSCRIBE, b"watcher.")
        self.socket.rcvhwm = 0
        self.socket.connect(endpoint)
        self.events: list[tuple[float, str, dict]] = []
        self.reaps: dict[int, tuple[float, str, dict]] = {}  # the first reap of each pid
        self.cond = threading.Condition()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            if not self.socket.poll(100):
                continue
            topic, body = self.socket.recv_multipart()
            received = time.time()
            event = (received, topic.decode(), json.loads(body))
            with self.cond:
                self.events.append(event)
                if event[1].endswith(".reap"):
                    self.reaps.setdefault(event[2].get("process_pid"), event)
                self.cond.notify_all()

    def wait(self, predicate, timeout: float, start: int = 0):
        """The first event from index `start` for which predicate(topic, msg) holds, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        checked = start
        with self.cond:
            while True:
                for event in self.events[checked:]:
                    if predicate(event[1], event[2]):
                        return event
                checked = len(self.events)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.cond.wait(remaining)

    def named(self, suffix: str, since: int = 0) -> list[tuple[float, str, dict]]:
        """The events from index `since` whose topic ends with `.suffix`."""
        with self.cond:
            return [e for e in self.events[since:] if e[1].endswith("." + suffix)]

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.socket.close(linger=0)
