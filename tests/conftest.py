"""Shared test fixtures: leak detection, polling with deadlines, daemons run as real processes.

The test process makes itself a child subreaper, so even daemonized gcircusd processes (double-forked away) and
their children stay in its process tree: after every test, anything it started that is still alive is killed by
pid and the test fails, so a leaking code path cannot hide.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import time

import gevent
import pytest
from gevent import subprocess as gsubprocess

from gcircus import linux

linux.set_child_subreaper(True)


def _restore_default_stop_signals() -> None:
    """Children must start with SIGINT and SIGQUIT at their defaults, whatever started the test run.

    A shell runs a background job (`scripts/test &`, a CI step) with both ignored, an ignored signal stays ignored
    across fork and exec, and every test that stops a child with SIGINT would then wait for a stop that never comes.
    A handler (unlike SIG_IGN) is reset to the default by exec.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


_restore_default_stop_signals()

PYTHON = sys.executable
GCIRCUSD = [PYTHON, "-m", "gcircus.cli.gcircusd"]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.005, message: str = "condition"):
    """Poll `predicate` (cooperatively) until it returns a truthy value or `timeout` passes; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        gevent.sleep(interval)


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    return linux.is_running(pid)


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def running_own_program(pid: int) -> bool:
    """True once `pid` has exec'd its own program.

    Between fork and exec a child is a copy of its parent, with the parent's argv and signal handlers: its
    /proc masks then describe the parent (gcircusd's SIGTERM and SIGINT handlers), not the command's traps.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            ppid = next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
        return _cmdline(pid) != _cmdline(ppid)
    except (OSError, StopIteration):
        return False


def live_descendants() -> list[int]:
    return [pid for pid in linux.descendants(os.getpid()) if alive(pid)]


@pytest.fixture(autouse=True)
def no_leaked_processes():
    """Fail any test that leaves a process it started running; kill the leftovers by pid either way."""
    before = set(live_descendants())
    yield
    leaked = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leaked = [pid for pid in live_descendants() if pid not in before]
        if not leaked:
            break
        gevent.sleep(0.02)
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if leaked:
        pytest.fail(f"test left processes running: {leaked}")


# Ports handed out by free_port(), one claim file each, shared by every test process on the machine (xdist workers,
# other checkouts' runs): a claim older than PORT_CLAIM_SECONDS (past any test's 120 s timeout) is forgotten.
PORT_CLAIMS = os.path.join(tempfile.gettempdir(), "gcircus-test-ports")
PORT_CLAIM_SECONDS = 300


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now and that no other test on this machine was given recently.

    bind(0) alone only says the port is free at that instant: two tests running in parallel can be handed the same
    port before either binds it (a daemon takes a while to start). An exclusive claim file settles who got it.
    """
    os.makedirs(PORT_CLAIMS, exist_ok=True)
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        claim = os.path.join(PORT_CLAIMS, str(port))
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return port
        except FileExistsError:
            _forget_stale_claim(claim)
    raise RuntimeError(f"no unclaimed free port after 1000 tries (claims in {PORT_CLAIMS})")


def _forget_stale_claim(claim: str) -> None:
    try:
        if time.time() - os.stat(claim).st_mtime > PORT_CLAIM_SECONDS:
            os.unlink(claim)
    except FileNotFoundError:
        pass


class Daemon:
    """A gcircusd process started on a config file, with its output captured to a file."""

    def __init__(self, config: str, *args: str, cwd: str | None = None, env: dict | None = None):
        self.config = config
        self.log_path = os.path.join(os.path.dirname(config), "gcircusd.out")
        self._log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = gsubprocess.Popen(GCIRCUSD + [config, *args], stdout=self._log, stderr=subprocess_stdout(),
                                      cwd=cwd, env=full_env)
        self.pid = self.proc.pid

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def children(self) -> list[int]:
        """The daemon's live direct children (its supervised processes)."""
        return [pid for pid in linux.children(self.pid) if alive(pid)]

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


def subprocess_stdout():
    return gsubprocess.STDOUT


@pytest.fixture
def daemon_factory():
    """Start gcircusd daemons; every one still running at the end of the test is stopped (SIGTERM, then SIGKILL)."""
    started: list[Daemon] = []

    def start(config: str, *args: str, **kwargs) -> Daemon:
        daemon = Daemon(str(config), *args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.signal(signal.SIGTERM)
            try:
                daemon.proc.wait(timeout=20)
            except gsubprocess.TimeoutExpired:
                daemon.signal(signal.SIGKILL)
                daemon.proc.wait()
        daemon._log.close()


def write_config(path, text: str) -> str:
    """Write an ini file (dedented) and return its path as a string."""
    import textwrap

    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)
