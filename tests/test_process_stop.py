"""Process.stop(), kill_tree(), wait() and the parent-death signal, on real process trees.

A stop must leave nothing behind: not the child, not its children, not a grandchild that left the process group
with setsid. Timing assertions are loose bounds that only tell "waited for the grace period" from "did not".
"""
from __future__ import annotations

import os
import signal
import sys
import textwrap
import time

import pytest
from gevent import subprocess as gsubprocess

from gcircus import linux
from gcircus.launcher import LAUNCHER_PROGRAMS
from gcircus.process import Process
from gcircus.watcher import Watcher
from tests.support.processes import alive
from tests.support.waiting import wait_for

PYTHON = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def spawn():
    """Create Processes; any still running at the end of the test is killed with its tree."""
    started: list[Process] = []

    def make(cmd, **kwargs) -> Process:
        kwargs.setdefault("pipe_stdout", False)
        kwargs.setdefault("pipe_stderr", False)
        process = Process("stop", 1, cmd, **kwargs)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop(signal.SIGKILL, graceful_timeout=0)


def python_child(tmp_path, setup: str) -> str:
    """The command line of a Python child that runs `setup`, then creates the file `ready` and waits for signals."""
    script = tmp_path / f"child{len(list(tmp_path.glob('child*.py')))}.py"
    ready = str(tmp_path / "ready")
    script.write_text("import os, signal, sys\n" + textwrap.dedent(setup) +
                      f"open({ready!r} + '.tmp', 'w').close()\nos.rename({ready!r} + '.tmp', {ready!r})\n"
                      "while True:\n    signal.pause()\n")
    return f"{PYTHON} {script}"


def descendants_when(process: Process, count: int) -> list[int]:
    return wait_for(lambda: (lambda d: d if len(d) >= count else None)(linux.descendants(process.pid)),
                    message=f"{count} descendants")


# -- graceful stop and escalation ----------------------------------------------------------------------------------

def test_stop_signal_is_honoured(spawn, tmp_path):
    process = spawn(python_child(tmp_path, """
        import os, signal, sys
        signal.signal(signal.SIGINT, lambda *_: sys.exit(42))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    """))
    wait_for((tmp_path / "ready").exists, message="the child's handlers")
    began = time.monotonic()
    assert process.stop(signal.SIGINT, graceful_timeout=120) == 42
    assert time.monotonic() - began < 60  # the handler ended it, not the grace running out
    assert not process.is_alive()


def test_signal_death_gives_a_negative_returncode(spawn):
    process = spawn("sleep 1000")
    assert process.stop(signal.SIGINT, graceful_timeout=10) == -signal.SIGINT
    assert process.poll() == process.returncode() == -signal.SIGINT
    assert process.exit.signaled


def test_exit_code_of_a_child_that_exits(spawn):
    process = spawn("exit 3", shell=True)
    assert process.wait(10) == 3
    assert not process.exit.signaled
    assert process.stop(graceful_timeout=1) == 3


def test_sigkill_after_graceful_timeout_for_a_child_ignoring_the_signal(spawn, tmp_path):
    process = spawn(python_child(tmp_path, """
        import os, signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    """))
    wait_for((tmp_path / "ready").exists, message="the child ignoring SIGTERM")
    began = time.monotonic()
    assert process.stop(signal.SIGTERM, graceful_timeout=0.3) == -signal.SIGKILL
    assert time.monotonic() - began >= 0.3


def test_zero_graceful_timeout_kills_at_once(spawn, tmp_path):
    process = spawn(python_child(tmp_path, """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    """))
    wait_for((tmp_path / "ready").exists, message="the child ignoring SIGTERM")
    began = time.monotonic()
    assert process.stop(signal.SIGTERM, graceful_timeout=0) == -signal.SIGKILL
    assert time.monotonic() - began < 15  # not the default 30 s grace


def test_stop_of_an_exited_process_returns_its_code(spawn):
    process = spawn("true")
    assert process.wait(10) == 0
    assert process.stop(graceful_timeout=5) == 0


def test_send_delivers_every_signal_of_the_stop(spawn):
    sent = []

    def send(pid, signum):
        sent.append((pid, signum))
        os.kill(pid, signum)

    process = spawn("sleep 1000")
    process.stop(signal.SIGUSR1, graceful_timeout=5, send=send)
    assert sent == [(process.pid, signal.SIGUSR1)]


REALTIME_STOP = signal.SIGRTMIN + 1  # queued per send: a duplicate cannot merge into the first, as SIGTERMs would


def signal_counter(tmp_path, name: str):
    """(script, ready, count): a Python program that blocks REALTIME_STOP, says it is ready, counts what it receives
    until a second after the first, then writes the count."""
    script, ready, count = tmp_path / f"{name}.py", tmp_path / f"{name}-ready", tmp_path / f"{name}-count"
    script.write_text(textwrap.dedent(f"""
        import signal, time
        signal.pthread_sigmask(signal.SIG_BLOCK, {{{int(REALTIME_STOP)}}})
        open({str(ready)!r}, "w").close()
        received = 0
        deadline = None
        while deadline is None or time.monotonic() < deadline:
            if signal.sigtimedwait({{{int(REALTIME_STOP)}}}, 0.05) is not None:
                received += 1
                deadline = deadline or time.monotonic() + 1.0  # stay a while: a duplicate would arrive meanwhile
        open({str(count)!r}, "w").write(str(received))
        """))
    return script, ready, count


def test_a_group_member_left_behind_gets_the_stop_signal_once(spawn, tmp_path):
    """The main process dies of the stop signal; its child, in its process group and its tree, is then stopped as a
    leftover: by the group's signal only, not a second time by pid. The child counts a realtime stop signal."""
    member, ready, count = signal_counter(tmp_path, "member")
    process = spawn(f"sh -c '{PYTHON} {member} & exec sleep 1000'")
    wait_for(ready.exists, message="the group member blocking the signal")
    process.stop(REALTIME_STOP, graceful_timeout=30)
    assert count.read_text() == "1"


def test_with_stop_children_the_main_process_gets_the_stop_signal_once(spawn, tmp_path):
    """With stop_children the group's signal is the main process's own: it is not sent once by pid and again by
    killpg. The main process counts a realtime stop signal."""
    main, ready, count = signal_counter(tmp_path, "main")
    process = spawn(f"{PYTHON} {main}")
    wait_for(ready.exists, message="the main process blocking the signal")
    process.stop(REALTIME_STOP, graceful_timeout=30, stop_children=True)
    assert count.read_text() == "1"


def test_a_two_argument_send_still_stops_with_stop_children(spawn):
    """A `send(pid, signum)` written before `deliver` existed still stops the tree (the main process by pid)."""
    sent = []

    def send(pid, signum):
        sent.append((pid, signum))
        os.kill(pid, signum)

    process = spawn("sh -c 'sleep 1000 & exec sleep 1000'")
    process.stop(signal.SIGTERM, graceful_timeout=30, stop_children=True, send=send)
    assert not process.is_alive() and (process.pid, signal.SIGTERM) in sent


def test_a_stopped_group_member_left_behind_gets_to_handle_the_stop_signal(spawn, tmp_path):
    """A leftover in the process group that is stopped (SIGSTOP) gets SIGCONT after the group's stop signal, so its
    handler runs at once instead of it being SIGKILLed when the grace period ends."""
    handled = tmp_path / "handled"
    member = tmp_path / "member.sh"
    member.write_text(f"trap 'echo TERM > {handled}; exit 0' TERM\necho $$ > {tmp_path / 'pid'}\n"
                      "while :; do sleep 0.05; done\n")
    process = spawn(f"sh -c 'sh {member} & exec sleep 1000'")
    pid = int(wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip(),
                       message="the group member"))
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: linux.read_proc(pid, "stat").split(b") ")[1][:1] == b"T", message="the member stopped")
    process.stop(signal.SIGTERM, graceful_timeout=30)
    assert handled.exists() and handled.read_text() == "TERM\n"


# -- whole trees ---------------------------------------------------------------------------------------------------

TREE = "sh -c 'sleep 1000 & sleep 1000 & wait'"


@pytest.mark.parametrize("stop_children", [True, False])
def test_stop_leaves_no_child_of_a_shell_tree(spawn, stop_children):
    process = spawn(TREE)
    children = descendants_when(process, 2)
    assert process.stop(signal.SIGTERM, graceful_timeout=5, stop_children=stop_children) == -signal.SIGTERM
    assert [pid for pid in children if alive(pid)] == []


def test_stop_children_kills_children_that_ignore_the_signal(spawn, tmp_path):
    child = python_child(tmp_path, """
        import os, signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    """)
    process = spawn(f"{child} & exec sleep 1000", shell=True)
    wait_for((tmp_path / "ready").exists, message="the stubborn child")
    children = linux.descendants(process.pid)
    began = time.monotonic()
    process.stop(signal.SIGTERM, graceful_timeout=0.3, stop_children=True)
    assert time.monotonic() - began >= 0.3
    assert children and [pid for pid in children if alive(pid)] == []


@pytest.mark.parametrize("ignores_term", [False, True])
def test_stop_reaches_a_grandchild_that_called_setsid(spawn, tmp_path, ignores_term):
    escapee = python_child(tmp_path, f"""
        import os, signal
        os.setsid()
        if {ignores_term}:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    """)
    process = spawn(f"sh -c '{escapee} & wait'")
    wait_for((tmp_path / "ready").exists, message="the escapee's setsid")
    tree = linux.descendants(process.pid)
    escaped = [pid for pid in tree if os.getsid(pid) != process.pid]
    assert len(escaped) == 1
    began = time.monotonic()
    process.stop(signal.SIGTERM, graceful_timeout=0.4 if ignores_term else 120)
    elapsed = time.monotonic() - began
    assert [pid for pid in tree if alive(pid)] == []
    # One that obeys SIGTERM ends the stop long before the 120 s grace would (however loaded the machine).
    assert elapsed >= 0.4 if ignores_term else elapsed < 60


def test_stop_reaches_group_members_left_by_an_exited_child(spawn):
    process = spawn("sh -c 'sleep 1000 & exit 0'")
    assert process.wait(10) == 0
    orphans = wait_for(lambda: [pid for pid in linux.children(os.getpid())
                                if alive(pid) and os.getpgid(pid) == process.pid], message="the orphan")
    process.stop(graceful_timeout=5)
    assert [pid for pid in orphans if alive(pid)] == []


ORPHANING_PARENT = """
import sys
sys.path.insert(0, {root!r})
from gcircus.process import Process
child = Process("orphans", 1, "sh -c 'sleep 1000 & exit 0'", pipe_stdout=False, pipe_stderr=False)
assert child.wait(10) == 0
print(child.pid, flush=True)
sys.stdin.readline()
child.stop(graceful_timeout=5)
print("stopped", flush=True)
"""


def test_stop_without_subreaper_reaches_group_members_it_cannot_see(tmp_path):
    # The helper is not a subreaper: the orphaned sleep is re-parented to this test process, out of the helper's
    # sight, and only the process group still ties it to the stopped child.
    script = tmp_path / "parent.py"
    script.write_text(ORPHANING_PARENT.format(root=ROOT))
    helper = gsubprocess.Popen([PYTHON, str(script)], stdin=gsubprocess.PIPE, stdout=gsubprocess.PIPE)
    try:
        pgid = int(helper.stdout.readline())
        orphans = wait_for(lambda: [pid for pid in linux.children(os.getpid())
                                    if alive(pid) and os.getpgid(pid) == pgid], message="the orphan")
        helper.stdin.write(b"stop\n")
        helper.stdin.flush()
        assert helper.stdout.readline() == b"stopped\n"
        assert [pid for pid in orphans if alive(pid)] == []
    finally:
        helper.kill()
        helper.wait()
        helper.stdin.close()
        helper.stdout.close()


def test_watcher_stop_leaves_no_descendant(tmp_path):
    escapee = python_child(tmp_path, """
        import os, signal
        os.setsid()
    """)
    # SIGTERM: a non-interactive shell starts background jobs with SIGINT ignored, so SIGINT would need the SIGKILL.
    watcher = Watcher("tree", f"sleep 1000 & {escapee} & wait", shell=True, graceful_timeout=120,
                      stop_signal=signal.SIGTERM, stop_children=True)
    try:
        watcher.start()
        wait_for((tmp_path / "ready").exists, message="the escapee")
        (process,) = watcher.processes.values()
        tree = [process.pid] + linux.descendants(process.pid)
        assert len(tree) == 3
    finally:
        began = time.monotonic()
        watcher.stop()
    assert time.monotonic() - began < 60  # every member obeyed SIGTERM: the 120 s grace did not run out
    assert [pid for pid in tree if alive(pid)] == []


# -- wait and kill_tree --------------------------------------------------------------------------------------------

def test_exit_is_seen_in_a_host_that_never_used_gevent_subprocess():
    # A fresh interpreter: nothing but gcircus has touched gevent's SIGCHLD handling.
    code = (f"import sys; sys.path.insert(0, {ROOT!r})\n"
            "from gcircus.process import Process\n"
            "print(Process('fresh', 1, 'sh -c \"exit 7\"', pipe_stdout=False).wait(10))\n")
    out = gsubprocess.run([PYTHON, "-c", code], stdout=gsubprocess.PIPE, timeout=30).stdout
    assert out == b"7\n"


def test_wait_with_timeout_returns_none_while_running(spawn):
    process = spawn("sleep 1000")
    began = time.monotonic()
    assert process.wait(0.1) is None
    assert time.monotonic() - began >= 0.1
    assert process.is_alive()
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL
    assert not process.is_alive()


def test_kill_tree_kills_the_child_and_its_descendants_at_once(spawn, tmp_path):
    escapee = python_child(tmp_path, """
        import os, signal
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    """)
    process = spawn(f"sh -c 'sleep 1000 & {escapee} & wait'")
    wait_for((tmp_path / "ready").exists, message="the escapee")
    tree = [process.pid] + linux.descendants(process.pid)
    assert len(tree) == 3
    process.kill_tree()
    assert process.wait(10) == -signal.SIGKILL
    wait_for(lambda: not any(alive(pid) for pid in tree), timeout=5, message="the whole tree killed")


# -- parent-death signal -------------------------------------------------------------------------------------------

PARENT = """
import os, sys, gevent
sys.path.insert(0, {root!r})
from gcircus.process import Process
from gcircus.watcher import Watcher
kind, option = sys.argv[1], sys.argv[2]
if kind == "process":
    child = Process("orphan", 1, "sleep 1000", pdeathsig=int(option) or None, pipe_stdout=False, pipe_stderr=False)
    pid = child.pid
else:
    watcher = Watcher("orphan", "sleep 1000", pdeathsig=option == "default", uid=sys.argv[3] or None)
    watcher.start()
    (pid,) = watcher.processes
print(pid, flush=True)
gevent.sleep(1000)
"""


def orphan_of_killed_parent(tmp_path, *args: str) -> int:
    """Start a helper Python process that spawns a child through gcircus, SIGKILL the helper, return the child pid."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(root=ROOT))
    parent = gsubprocess.Popen([PYTHON, str(script), *args], stdout=gsubprocess.PIPE)
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        # The signal is armed by the launcher after the spawn returned (see gcircus.launcher): a parent killed
        # before that makes the launcher's parent check, not the signal, stop the child. Test the signal itself.
        wait_for(lambda: os.path.basename(os.readlink(f"/proc/{child}/exe")) not in LAUNCHER_PROGRAMS,
                 message="command exec'd")
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    return child


@pytest.mark.parametrize("args", [("process", str(int(signal.SIGTERM))), ("process", str(int(signal.SIGKILL))),
                                  ("watcher", "default", "")])
def test_pdeathsig_child_dies_with_its_parent(tmp_path, args):
    child = orphan_of_killed_parent(tmp_path, *args)
    wait_for(lambda: not alive(child), timeout=5, message="the orphan's death")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root")
def test_pdeathsig_survives_the_uid_switch(tmp_path):
    child = orphan_of_killed_parent(tmp_path, "watcher", "default", "nobody")
    wait_for(lambda: not alive(child), timeout=5, message="the orphan's death")


@pytest.mark.parametrize("args", [("process", "0"), ("watcher", "off", "")])
def test_without_pdeathsig_the_child_outlives_its_parent(tmp_path, args):
    child = orphan_of_killed_parent(tmp_path, *args)
    try:
        # The orphan is re-parented to this test process (a subreaper): it survived its parent's death.
        wait_for(lambda: child in linux.children(os.getpid()), timeout=5, message="the re-parenting")
        assert alive(child)
    finally:
        os.kill(child, signal.SIGKILL)
    wait_for(lambda: not alive(child), message="the orphan's death")
