"""Process trees under gcircusd: nothing a service started outlives gcircusd, orphans are reaped, PDEATHSIG."""
from __future__ import annotations

import os
import signal
import sys

import pytest

from gcircus import launcher, linux
from tests.support.daemons import make_config, started
from tests.support.processes import alive, handles, live_descendants, signals_settled
from tests.support.waiting import wait_for


def exists(pid: int) -> bool:
    """True while /proc has an entry for `pid`, zombies included (a zombie is a process nobody reaped yet)."""
    return os.path.exists(f"/proc/{pid}")


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")[:-1]


def running_commands(pids: list[int], commands: list[list[str]]) -> dict[int, list[str]] | None:
    """{pid: command line} once each of `pids` runs one of `commands` (past exec and any launcher), else None."""
    lines = {pid: cmdline(pid) for pid in pids}
    return lines if all(line in commands for line in lines.values()) else None


def read_pids(path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except FileNotFoundError:
        return []


ESCAPER = """
import os, sys, time
record, double_fork = sys.argv[1], sys.argv[2] == "double"
if os.fork() == 0:
    os.setsid()
    if double_fork and os.fork() != 0:
        os._exit(0)
    with open(record, "a") as f:
        f.write("%d\\n" % os.getpid())
    time.sleep(1000)
    os._exit(0)
time.sleep(1000)
"""


def forks_escaping_child(tmp_path, record, double_fork: bool) -> str:
    """A python command whose child calls setsid() (and, with `double_fork`, forks again and exits), then sleeps.

    The sleeper writes its pid to `record`. Without the double fork it stays gcircusd's grandchild but leaves the
    process group; with it, it is orphaned and re-parented to gcircusd (a child subreaper).
    """
    script = tmp_path / "escaper.py"
    script.write_text(ESCAPER)
    return f"{sys.executable} {script} {record} {'double' if double_fork else 'single'}"


def started_escaper(daemon, record) -> tuple[int, int]:
    """The escaper watcher's process and the process it let escape, once both run.

    With the double fork the escaped process is re-parented to gcircusd, maybe before the watcher's process is seen:
    gcircusd then has two children, and the watcher's process is the one that is not the escaped one.
    """
    wait_for(lambda: "gcircusd running" in daemon.output(), message="gcircusd running")
    [escaped] = wait_for(lambda: read_pids(record), message="escaped process")
    [child] = wait_for(lambda: [pid for pid in daemon.children() if pid != escaped], message="the watcher's process")
    return child, escaped


@pytest.mark.parametrize("stop_children", ["false", "true"])
def test_shell_with_background_children_leaves_nothing(tmp_path, daemon_factory, stop_children):
    config = make_config(tmp_path, f"""
        [watcher:shell]
        cmd = sh -c 'sleep 1000 & sleep 1000 & wait'
        numprocesses = 2
        stop_children = {stop_children}
        graceful_timeout = 2
        """)
    daemon = daemon_factory(config)
    shells = started(daemon, 2)
    tree = wait_for(lambda: (lambda d: len(d) == 6 and d)(linux.descendants(daemon.pid)), message="2 shells, 4 sleeps")
    assert set(shells) < set(tree)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert not any(alive(pid) for pid in tree)


@pytest.mark.parametrize("double_fork", [False, True], ids=["setsid-grandchild", "setsid-orphan"])
def test_escaped_descendant_is_stopped_with_gcircusd(tmp_path, daemon_factory, double_fork):
    record = tmp_path / "escaped"
    config = make_config(tmp_path, f"""
        [watcher:escaper]
        cmd = {forks_escaping_child(tmp_path, record, double_fork)}
        graceful_timeout = 2
        """)
    daemon = daemon_factory(config)
    child, escaped = started_escaper(daemon, record)
    assert os.getsid(escaped) != os.getsid(child) and os.getpgid(escaped) != os.getpgid(child)
    if double_fork:
        wait_for(lambda: escaped in daemon.children(), message="orphan re-parented to gcircusd")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert not alive(child)
    assert not alive(escaped)


def test_adopted_orphan_is_reaped_when_it_dies(tmp_path, daemon_factory):
    record = tmp_path / "escaped"
    config = make_config(tmp_path, f"""
        [watcher:escaper]
        cmd = {forks_escaping_child(tmp_path, record, double_fork=True)}
        """)
    daemon = daemon_factory(config)
    _, orphan = started_escaper(daemon, record)
    wait_for(lambda: orphan in linux.children(daemon.pid), message="orphan re-parented to gcircusd")
    os.kill(orphan, signal.SIGKILL)
    # gcircusd is its parent now: it must reap it, or a zombie stays in the process table.
    wait_for(lambda: not exists(orphan), timeout=30, message="orphan reaped by gcircusd")
    assert daemon.proc.poll() is None


def test_no_zombie_is_left_while_children_crash_and_respawn(tmp_path, daemon_factory):
    config = make_config(tmp_path, """
        [watcher:short]
        cmd = sh -c 'sleep 0.2; exit 3'
        numprocesses = 2
        check_flapping = false
        """)
    daemon = daemon_factory(config)
    first = set(started(daemon, 2))
    # Wait for a full generation to have been replaced, then check none of the dead is a zombie.
    wait_for(lambda: not first & set(daemon.children()) and len(daemon.children()) == 2, message="respawn")
    wait_for(lambda: not any(exists(pid) for pid in first), timeout=30, message="dead children reaped")
    zombies = [pid for pid in linux.children(daemon.pid) if not alive(pid)]
    wait_for(lambda: not any(exists(pid) for pid in zombies), timeout=30, message="no zombie children")


def test_sigkill_of_gcircusd_makes_children_die(tmp_path, daemon_factory):
    config = make_config(tmp_path, """
        [watcher:web]
        cmd = /bin/sleep 1000
        numprocesses = 2
        """)
    daemon = daemon_factory(config)
    pids = started(daemon, 2)
    daemon.signal(signal.SIGKILL)
    assert daemon.wait(5) == -signal.SIGKILL
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30, message="children killed by PDEATHSIG")


def test_sigkill_of_gcircusd_while_it_spawns_makes_children_die(tmp_path, daemon_factory):
    """gcircusd killed the moment its first child is forked, before the child armed its parent-death signal.

    The kernel sends that signal only if the parent dies after the prctl. On the fast path the prctl runs in the
    launcher (see gcircus.launcher), after the fork: the child must then see for itself that its parent is no
    longer gcircusd. Whether the kill lands before the prctl depends on scheduling, so the test gives it a few
    chances.
    """
    before = set(live_descendants())
    for attempt in range(3):
        directory = tmp_path / str(attempt)
        directory.mkdir()
        daemon = daemon_factory(make_config(directory, """
            [watcher:web]
            cmd = /bin/sleep 1000
            numprocesses = 3
            """))
        wait_for(lambda d=daemon: linux.children(d.pid), 30, interval=0, message="first child forked")
        daemon.signal(signal.SIGKILL)
        assert daemon.wait(5) == -signal.SIGKILL
        wait_for(lambda: not set(live_descendants()) - before, timeout=30, message="children killed by PDEATHSIG")


@pytest.mark.parametrize("kind", ["native", "shell"])
def test_pdeathsig_uses_the_watcher_stop_signal(tmp_path, daemon_factory, kind):
    """With either launcher (see gcircus.launcher); gcircusd says at start when it uses the slower shell one."""
    if kind == "native" and launcher.native_launcher() is None:
        pytest.skip("gcircus-launch is not built here (no C compiler at install)")
    record = tmp_path / "got"
    traps = f'trap "echo INT >> {record}; exit 0" INT; trap "echo TERM >> {record}; exit 0" TERM'
    config = make_config(tmp_path, f"""
        [watcher:web]
        cmd = sh -c '{traps}; while :; do sleep 0.1; done'
        stop_signal = INT
        """)
    daemon = daemon_factory(config, env={launcher.LAUNCHER_ENV: kind})
    [pid] = started(daemon, 1)
    said = "GCIRCUS_LAUNCHER=shell is set: children with a parent-death signal"
    if kind == "shell":
        wait_for(lambda: said in daemon.output(), message="the start-up warning about the shell launcher")
    wait_for(lambda: handles(pid, signal.SIGINT), message="traps installed")
    daemon.signal(signal.SIGKILL)
    daemon.wait(5)
    wait_for(lambda: not alive(pid), timeout=30, message="child stopped by PDEATHSIG")
    assert record.read_text().split() == ["INT"]
    assert (said in daemon.output()) == (kind == "shell")


SURVIVOR = ["/bin/sleep", "1000"]


@pytest.mark.parametrize("where", ["circus", "watcher"])
def test_pdeathsig_false_lets_children_survive(tmp_path, daemon_factory, where):
    circus = "pdeathsig = false" if where == "circus" else ""
    survivor_option = "pdeathsig = false" if where == "watcher" else ""
    config = make_config(tmp_path, f"""
        [watcher:survivor]
        cmd = /bin/sleep 1000
        numprocesses = 2
        {survivor_option}

        [watcher:default]
        cmd = /bin/sleep 999
        """, circus=circus)
    daemon = daemon_factory(config)
    children = started(daemon, 3)
    # gcircusd's spawn returns (and it says it runs) while the child is still inside execve: the kernel closes the
    # close-on-exec pipe the spawn waits on before it sets up the new arguments, and /proc shows an empty command
    # line meanwhile. A child of the default watcher runs its launcher first. Tell them apart once each
    # runs its command.
    commands = wait_for(lambda: running_commands(children, [SURVIVOR, ["/bin/sleep", "999"]]),
                        message="children running their commands")
    survivors = [pid for pid in children if commands[pid] == SURVIVOR]
    others = [pid for pid in children if pid not in survivors]
    assert len(survivors) == 2 and len(others) == 1
    try:
        daemon.signal(signal.SIGKILL)
        daemon.wait(5)
        if where == "watcher":
            wait_for(lambda: not any(alive(pid) for pid in others), timeout=30, message="default watcher's child dies")
        # A parent-death signal is queued as the daemon exits, before daemon.wait() can reap it: once no child has
        # one left to act on, any that got one is dead.
        wait_for(lambda: all(signals_settled(pid) for pid in survivors + others), message="signals acted on")
        assert all(alive(pid) for pid in survivors)
        if where == "circus":
            assert all(alive(pid) for pid in others)
    finally:
        for pid in daemon.children() + survivors + others:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(alive(pid) for pid in survivors + others), message="cleanup")


def test_instantly_exiting_first_children_are_all_seen(tmp_path, daemon_factory):
    """Several daemons whose very first child exits at once: each must see that exit (none left as a zombie)."""
    daemons = []
    for n in range(4):
        directory = tmp_path / str(n)
        directory.mkdir()
        daemons.append(daemon_factory(make_config(directory, """
            [watcher:instant]
            cmd = /bin/true
            respawn = false
            """)))
    for daemon in daemons:
        wait_for(lambda d=daemon: "exited with code 0" in d.output(), timeout=30, message="first exit seen")
