"""The three supervisors under test: how to install them, configure them and start them.

Each target writes an equivalent config for "N copies of the workload" into a temp dir and returns
the argv that runs its daemon in the foreground. circusd and gcircusd read the very same ini file,
which is the point of gcircus being a drop-in.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENVS = BENCH_DIR / ".venvs"
SLEEP = "/bin/sleep"

CIRCUS_PIN = "circus==0.19.0"
SUPERVISOR_PIN = "supervisor==4.3.0"


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1 (tiny race with the daemon's bind; fine here)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], log: Path) -> None:
    with open(log, "ab") as fh:
        subprocess.run(argv, check=True, stdout=fh, stderr=subprocess.STDOUT)


def ensure_venv(name: str, pin: str, log: Path) -> Path:
    """Create ``benchmarks/.venvs/<name>`` with ``pin`` installed, unless it is already there.

    Separate venvs keep Circus's and supervisor's dependencies (tornado, old pyzmq pins, ...) away
    from the project venv, so the gcircusd numbers are not taken with foreign packages loaded.
    """
    venv = VENVS / name
    py = venv / "bin" / "python"
    dist, version = pin.split("==")
    if py.exists():
        probe = subprocess.run(
            [str(py), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
            capture_output=True, text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return venv
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(venv)], log)
    _run([str(py), "-m", "pip", "install", "-q", pin], log)
    return venv


def installed_version(venv: Path, dist: str) -> str:
    """The installed version of ``dist`` in ``venv`` (reported, in case the pin had to change)."""
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True, text=True,
    )
    return out.stdout.strip() or "?"


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
    """A Circus ini for N workload copies on run-time ports.

    statsd and multicast discovery are off so no extra processes or UDP sockets are involved;
    check_delay is left at its default (5 s), as a real user would have it.
    """
    path = tmp / "circus.ini"
    path.write_text(
        "[circus]\n"
        f"endpoint = tcp://127.0.0.1:{free_port()}\n"
        f"pubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
        "statsd = false\n"
        "multicast_endpoint =\n"
        "\n"
        "[watcher:work]\n"
        f"cmd = {SLEEP}\n"
        f"args = {marker}\n"
        f"numprocesses = {n}\n"
    )
    return path


class Circus(Target):
    def __init__(self):
        super().__init__("circus")

    def prepare(self, log: Path) -> None:
        self.venv = ensure_venv("circus", CIRCUS_PIN, log)
        self.version = installed_version(self.venv, "circus")

    def command(self, tmp, n, marker):
        return [str(self.venv / "bin" / "circusd"), "--log-level", "warning", str(circus_ini(tmp, n, marker))]


class GCircus(Target):
    def __init__(self):
        super().__init__("gcircusd")

    def prepare(self, log: Path) -> None:
        """Use the project venv; (re)create it with scripts/_install only if gcircusd is missing."""
        self.exe = REPO / ".venv" / "bin" / "gcircusd"
        if not self.exe.exists():
            _run(["bash", str(REPO / "scripts" / "_install")], log)
        self.version = installed_version(REPO / ".venv", "gcircus")
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        if rev:
            self.version += f" @{rev}"

    def command(self, tmp, n, marker):
        return [str(self.exe), str(circus_ini(tmp, n, marker))]


class Supervisord(Target):
    def __init__(self):
        super().__init__("supervisord")

    def prepare(self, log: Path) -> None:
        self.venv = ensure_venv("supervisor", SUPERVISOR_PIN, log)
        self.version = installed_version(self.venv, "supervisor")

    def command(self, tmp, n, marker):
        """supervisord in the foreground; numprocs + process_name give N copies of one program.

        startsecs=0 makes a child RUNNING at once (no 1 s grace), autorestart brings it back
        after a kill; child output is discarded, like Circus's default.
        """
        conf = tmp / "supervisord.conf"
        conf.write_text(
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
            "[supervisorctl]\n"
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
        return [str(self.venv / "bin" / "supervisord"), "-n", "-c", str(conf)]


TARGETS = {t.name: t for t in (GCircus(), Circus(), Supervisord())}
