"""The suite's own guarantees hold when its files run in parallel (scripts/test runs pytest-xdist workers).

Each worker is a separate process and a child subreaper of its own, so the leak check (tests.support.isolation) sees
and kills what a test in that worker left running, daemonized grandchildren included; and free_port() never hands the
same port to two processes, which bind(0) alone would do (it only says a port is free at that instant).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from gcircus import linux

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

INNER_CONFTEST = "pytest_plugins = ['tests.support.isolation']  # the leak check, as in tests/conftest.py\n"
INNER_TESTS = {
    "test_leaks_a_child.py": """
import subprocess

def test_leaves_a_child():
    subprocess.Popen(["/bin/sleep", "1000"])
""",
    "test_leaks_a_daemon.py": """
import os, subprocess

def test_leaves_a_double_forked_grandchild(tmp_path):
    pidfile = tmp_path / "pid"
    subprocess.run(["/bin/sh", "-c", f"/bin/sleep 1000 & echo $! > {pidfile}"], check=True)
    with open(os.environ["LEAKED_PIDS"], "a") as f:
        f.write(pidfile.read_text())
""",
    "test_cleans_up.py": """
import subprocess

def test_waits_for_its_child():
    subprocess.run(["/bin/true"], check=True)
""",
}


def run_inner_suite(tmp_path, *args: str, tests: dict = INNER_TESTS, **popen) -> subprocess.CompletedProcess:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(INNER_CONFTEST)
    for name, text in tests.items():
        (suite / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": REPO, "LEAKED_PIDS": str(tmp_path / "leaked")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rE", *args, str(suite)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, **popen)


def test_each_xdist_worker_fails_and_kills_what_its_tests_leave_running(tmp_path):
    result = run_inner_suite(tmp_path, "-n", "2", "--dist", "loadfile")
    assert result.returncode == 1, result.stdout + result.stderr
    # The check fails the test's teardown: pytest counts that as an error of the test.
    assert "3 passed, 2 errors" in result.stdout, result.stdout
    errors = sorted(line.split()[1] for line in result.stdout.splitlines() if line.startswith("ERROR"))
    assert errors == ["suite/test_leaks_a_child.py::test_leaves_a_child",
                      "suite/test_leaks_a_daemon.py::test_leaves_a_double_forked_grandchild"], errors
    # Count the teardown tracebacks ("E   Failed: ..."), not the short summary, whose lines pytest truncates to the
    # terminal's width (COLUMNS differs between a shell and CI).
    failures = [line for line in result.stdout.splitlines()
                if line.startswith("E ") and "Failed: test left processes running" in line]
    assert len(failures) == 2, result.stdout
    leaked = int((tmp_path / "leaked").read_text())
    assert not linux.is_running(leaked)


FREE_PORTS = f"""
import json, sys
sys.path.insert(0, {REPO!r})
from tests.support.ports import free_port
print(json.dumps([free_port() for _ in range(50)]))
"""


def test_free_port_never_gives_two_processes_the_same_port():
    # 4 x 50 ports drawn by bind(0) alone (it prefers the ~14000 odd ports of the ephemeral range) repeat one with a
    # probability of about 75% (birthday bound); parallel tests hand out hundreds.
    procs = [subprocess.Popen([sys.executable, "-c", FREE_PORTS], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    ports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        ports += json.loads(out)
    assert len(ports) == 200 and len(set(ports)) == 200


SIGNAL_TESTS = {"test_child_signals.py": """
import signal, subprocess
from tests.support.waiting import wait_for

def ignored(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("SigIgn:")), 16)

def test_a_child_stops_on_sigint():
    child = subprocess.Popen(["/bin/sleep", "1000"])
    assert ignored(child.pid) & (1 << (signal.SIGINT - 1) | 1 << (signal.SIGQUIT - 1)) == 0
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=60) == -signal.SIGINT
"""}


def _ignore_stop_signals():
    """What a shell does to a background job: SIGINT and SIGQUIT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


@pytest.mark.parametrize("workers", [["-n", "0"], ["-n", "1"]], ids=["in-process", "xdist-worker"])
def test_children_get_default_stop_signals_when_the_run_started_with_them_ignored(tmp_path, workers):
    result = run_inner_suite(tmp_path, *workers, tests=SIGNAL_TESTS, preexec_fn=_ignore_stop_signals)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_child_between_fork_and_exec_is_not_taken_for_its_command():
    """Its signal masks are its parent's (here pytest's SIGINT handler): a test waiting for the command's trap
    must not take them for it, or it signals the command before the trap exists (a flaky PDEATHSIG test did)."""
    from tests.support.processes import running_own_program
    from tests.support.waiting import wait_for

    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: hold still between fork and exec until released
        try:
            os.read(release_r, 1)
            os.execv("/bin/sleep", ["/bin/sleep", "1000"])
        finally:
            os._exit(127)
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = int(next(line.split()[1] for line in f if line.startswith("SigCgt:")), 16)
        assert caught & (1 << (signal.SIGINT - 1))  # what a naive "trap installed" check would accept
        assert not running_own_program(pid)
        os.write(release_w, b"x")
        wait_for(lambda: running_own_program(pid), 60, message="the exec of sleep")
    finally:
        os.close(release_r)
        os.close(release_w)
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # reaped already by gevent's SIGCHLD handler, if an earlier test installed it
            pass
