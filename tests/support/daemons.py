"""gcircusd as a real process: configs on free ports, started daemons, detached daemons, its command line."""
from __future__ import annotations

import contextlib
import os
import signal
import textwrap

import zmq
from gevent import subprocess as gsubprocess

from gcircus.client import Client
from gcircus.watcher import SERVICE_MANAGER_ENV
from tests.support.control import Wire
from tests.support.ports import free_port
from tests.support.processes import PYTHON, alive, children, terminate_child
from tests.support.waiting import wait_for

GCIRCUSD = [PYTHON, "-m", "gcircus.cli.gcircusd"]


# -- configs ---------------------------------------------------------------------------------------------------------

def write_config(path, text: str) -> str:
    """Write an ini file (dedented) and return its path as a string."""
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def circus_config(tmp_path, watchers: str, circus: str = "", endpoint: str | None = None) -> tuple[str, str]:
    """Write circus.ini: [circus] with the control endpoint (a free port unless given), the pubsub endpoint on a free
    port and the dedented `circus` lines, then the dedented `watchers` text; return (path, control endpoint)."""
    endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
    path = tmp_path / "circus.ini"
    path.write_text(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
                    + textwrap.dedent(circus) + "\n" + textwrap.dedent(watchers))
    return str(path), endpoint


def config_with_marker(tmp_path, watchers: str) -> tuple[str, str]:
    """circus.ini whose first watcher, `good`, would create a marker file if it ever ran, then the dedented
    `watchers`; return (path, marker path). A test of a refused configuration checks the marker never appears."""
    marker = tmp_path / "started"
    good = f"[watcher:good]\ncmd = sh -c 'touch {marker}; exec sleep 1000'\npriority = 10\n\n"
    return make_config(tmp_path, good + textwrap.dedent(watchers)), str(marker)


def make_config(tmp_path, watchers: str, circus: str = "") -> str:
    """circus_config() without the endpoint: the path of circus.ini."""
    return circus_config(tmp_path, watchers, circus)[0]


def marker_config(tmp_path, name: str = "circus.ini", circus: str = "") -> tuple[str, object]:
    """A config whose watcher creates a marker file when it starts, so a refused start can be told apart."""
    directory = tmp_path / name.replace(".ini", "")
    directory.mkdir()
    marker = directory / "started"
    return make_config(directory, f"""
        [watcher:web]
        cmd = sh -c 'touch {marker}; exec sleep 1000'
        graceful_timeout = 2
        """, circus=circus), marker


def read_pid(path) -> int | None:
    """The pid a pidfile holds, None while it holds none."""
    try:
        return int(open(path).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# -- a daemon in the foreground ------------------------------------------------------------------------------------

class Daemon:
    """A gcircusd process started on a config file, with its output captured to a file."""

    def __init__(self, config: str, *args: str, cwd: str | None = None, env: dict | None = None):
        self.config = config
        self.log_path = os.path.join(os.path.dirname(config), "gcircusd.out")
        self._log = open(self.log_path, "ab")
        # A test run under a service manager must not have every gcircusd it starts notify that manager.
        full_env = {key: value for key, value in os.environ.items() if key not in SERVICE_MANAGER_ENV}
        full_env.update(env or {})
        self.proc = gsubprocess.Popen(GCIRCUSD + [config, *args], stdout=self._log, stderr=gsubprocess.STDOUT,
                                      cwd=cwd, env=full_env)
        self.pid = self.proc.pid

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def children(self) -> list[int]:
        """The daemon's live direct children (its supervised processes)."""
        return children(self.pid)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._log.close()

    def terminate(self) -> None:
        """SIGTERM, then SIGKILL after 20 s; close the output file. Nothing of it outlives the test."""
        terminate_child(self.proc, 20)
        self._log.close()


def started(daemon, count: int, timeout: float = 30) -> list[int]:
    """Wait until the daemon reports it is running with `count` children; return their pids."""
    wait_for(lambda: "gcircusd running" in daemon.output(), timeout, message="gcircusd running")
    return wait_for(lambda: len(daemon.children()) == count and daemon.children(), timeout,
                    message=f"{count} children")


def start_daemon(tmp_path, watchers: str, expect: dict[str, int]) -> tuple[Daemon, str]:
    """Start gcircusd (no fixture: it may serve a whole module); return once the control channel answers and each
    watcher runs its expected count. stop_daemon() stops it."""
    config, endpoint = circus_config(tmp_path, watchers)
    daemon = Daemon(config)
    wire = Wire(endpoint)
    try:
        def ready():
            if daemon.proc.poll() is not None:
                raise AssertionError(f"gcircusd exited early:\n{daemon.output()}")
            if not wire.socket.poll(0, zmq.POLLOUT):
                return False
            try:
                return all(len(wire.command("list", name=w).get("pids", ())) == n for w, n in expect.items())
            except AssertionError:
                return False
        wait_for(ready, 20, interval=0.05, message="gcircusd serving with its processes up")
    except BaseException:
        stop_daemon(daemon)
        raise
    finally:
        wire.close()
    return daemon, endpoint


def stop_daemon(daemon: Daemon) -> None:
    daemon.terminate()


@contextlib.contextmanager
def daemon_with_fd_limit(tmp_path, config: str, nofile: int, hard: int | None = None):
    """gcircusd on `config` under `prlimit --nofile=N` (soft N, hard `hard` or N); yields (process, output reader);
    stopped (then killed) after."""
    log_path = tmp_path / "gcircusd.out"
    with open(log_path, "wb") as log:
        daemon = gsubprocess.Popen(["prlimit", f"--nofile={nofile}:{hard or nofile}", "--"] + GCIRCUSD + [config],
                                   stdout=log, stderr=gsubprocess.STDOUT)
    try:
        yield daemon, lambda: log_path.read_text(errors="replace")
    finally:
        terminate_child(daemon)


class ReloadSetup:
    """A gcircusd on a config file the test rewrites between reloadconfig calls (the `setup` fixture)."""

    def __init__(self, tmp_path, daemon_factory):
        self.path = tmp_path / "circus.ini"
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.pubsub = f"tcp://127.0.0.1:{free_port()}"
        self.daemon_factory = daemon_factory
        self.daemon = None
        self.client = None

    def write(self, watchers: str, circus: str = "") -> None:
        head = f"[circus]\nendpoint = {self.endpoint}\npubsub_endpoint = {self.pubsub}\n{textwrap.dedent(circus)}\n"
        self.path.write_text(head + textwrap.dedent(watchers))

    def start(self, watchers: str, counts: dict[str, int]):
        self.write(watchers)
        self.daemon = self.daemon_factory(str(self.path))
        wait_for(lambda: "gcircusd running" in self.daemon.output() or self.daemon.proc.poll() is not None, 15,
                 message="gcircusd running")
        assert self.daemon.proc.poll() is None, self.daemon.output()
        self.client = Client(self.endpoint, timeout=20)
        for name, count in counts.items():
            self.wait_pids(name, count)
        return self

    def call(self, command: str, **props) -> dict:
        return self.client.call(command, **props)

    def pids(self, name: str) -> list[int]:
        return self.call("list", name=name)["pids"]

    def wait_pids(self, name: str, count: int) -> list[int]:
        return wait_for(lambda: (lambda p: len(p) == count and p)(self.pids(name)), 15,
                        message=f"{count} processes of {name}")

    def watchers(self) -> list[str]:
        return self.call("list")["watchers"]

    def close(self):
        if self.client is not None:
            self.client.close()


# -- gcircusd's command line, and detached daemons (--daemon) --------------------------------------------------------

def run_cli(*args: str, timeout: float = 10, env: dict | None = None) -> gsubprocess.CompletedProcess:
    """Run gcircusd to completion with stdout and stderr captured separately (`env` added to the environment)."""
    return gsubprocess.run(GCIRCUSD + list(args), stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE,
                           timeout=timeout, text=True, env={**os.environ, **(env or {})})


def launch_detached(*args: str) -> gsubprocess.CompletedProcess:
    """`gcircusd --daemon ARGS`: returns once the launching command exits (the daemon runs on, detached)."""
    return gsubprocess.run(GCIRCUSD + ["--daemon", *args], stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE,
                           text=True, timeout=15)


def stop_detached(pid: int) -> None:
    """SIGTERM a detached daemon by pid and wait until it is gone."""
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), message="daemon gone")
