"""Watcher behaviour with real processes: respawn, stop paths, numprocesses, reload, max_age, events."""
from __future__ import annotations

import errno
import os
import signal
import sys

import gevent
import psutil
import pytest

from gcircus.streams import outputs
from gcircus.watcher import Watcher
from tests.support.processes import alive, running_own_program
from tests.support.recorders import WatcherRecorder
from tests.support.waiting import wait_for

PY = sys.executable
IGNORE_TERM = f"{PY} -c \"import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)\""


@pytest.fixture
def make_watcher():
    made: list[Watcher] = []

    def make(name="w", cmd="/bin/sleep 1000", **kwargs) -> Watcher:
        kwargs.setdefault("graceful_timeout", 5)
        watcher = Watcher(name, cmd, **kwargs)
        made.append(watcher)
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


def test_start_spawns_numprocesses_and_publishes_spawn_then_start(make_watcher):
    watcher = make_watcher(numprocesses=3)
    rec = WatcherRecorder(watcher)
    result = watcher.start()
    assert watcher.status() == "active"
    assert sorted(result["started"]) == sorted(watcher.pids)
    assert len(watcher.pids) == 3 and all(alive(p) for p in watcher.pids)
    assert rec.names() == ["spawn", "spawn", "spawn", "start"]
    assert {m["process_pid"] for m in rec.of("spawn")} == set(watcher.pids)


def test_killed_child_is_replaced_and_reaped_with_signal_exit_code(make_watcher):
    watcher = make_watcher(numprocesses=2)
    rec = WatcherRecorder(watcher)
    watcher.start()
    victim = watcher.pids[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in watcher.pids and len(watcher.pids) == 2, message="replacement")
    reaps = rec.of("reap")
    assert reaps[0]["process_pid"] == victim and reaps[0]["exit_code"] == -signal.SIGKILL
    assert rec.names()[-2:] == ["reap", "spawn"]
    assert not alive(victim)


def test_exit_code_of_natural_death_is_reported(make_watcher):
    watcher = make_watcher(cmd="sh -c 'read x; exit 3'", close_child_stdin=True, respawn=False)
    rec = WatcherRecorder(watcher)
    watcher.start()
    wait_for(lambda: rec.of("reap"), message="reap")
    assert rec.of("reap")[0]["exit_code"] == 3


def test_respawn_false_stops_watcher_when_last_process_dies(make_watcher):
    watcher = make_watcher(respawn=False)
    rec = WatcherRecorder(watcher)
    watcher.start()
    os.kill(watcher.pids[0], signal.SIGKILL)
    wait_for(lambda: watcher.status() == "stopped", message="watcher stopped")
    assert watcher.pids == []
    assert rec.names()[-1] == "stop"


def test_stop_kills_reaps_then_publishes_stop(make_watcher):
    watcher = make_watcher(numprocesses=3)
    rec = WatcherRecorder(watcher)
    watcher.start()
    pids = list(watcher.pids)
    watcher.stop()
    assert watcher.status() == "stopped"
    assert not any(alive(p) for p in pids)
    tail = rec.names()[4:]
    assert tail[:3] == ["kill"] * 3
    assert sorted(tail[3:6]) == ["reap"] * 3
    assert tail[-1] == "stop"
    assert {m["process_pid"] for m in rec.of("reap")} == set(pids)


def test_stop_escalates_to_sigkill_after_graceful_timeout(make_watcher):
    watcher = make_watcher(cmd=IGNORE_TERM, graceful_timeout=0.3)
    rec = WatcherRecorder(watcher)
    watcher.start()
    pid = watcher.pids[0]
    # The child must have installed its SIG_IGN before we stop it.
    wait_for(lambda: _ignores(pid, signal.SIGTERM), message="child ignoring SIGTERM")
    watcher.stop()
    assert not alive(pid)
    assert [m["process_pid"] for m in rec.of("kill")] == [pid, pid]
    assert rec.of("reap")[0]["exit_code"] == -signal.SIGKILL


def test_custom_stop_signal_is_used(make_watcher, tmp_path):
    marker = tmp_path / "got"
    cmd = f"sh -c 'trap \"echo INT > {marker}; exit 0\" INT; while :; do sleep 0.05; done'"
    watcher = make_watcher(cmd=cmd, stop_signal=signal.SIGINT)
    watcher.start()
    wait_for(lambda: _ignores_or_catches(watcher.pids[0], signal.SIGINT), message="trap installed")
    watcher.stop()
    assert marker.read_text().strip() == "INT"


def test_incr_and_decr_change_process_count_and_decr_stops_oldest(make_watcher):
    watcher = make_watcher(numprocesses=2)
    watcher.start()
    first = sorted(watcher.processes.values())
    oldest = first[0].pid
    assert watcher.incr(2) == 4
    assert len(watcher.pids) == 4
    assert watcher.decr() == 3
    assert oldest not in watcher.pids and not alive(oldest)
    assert watcher.decr(10) == 0
    assert watcher.pids == []


def test_incr_on_stopped_watcher_changes_target_only(make_watcher):
    watcher = make_watcher(numprocesses=1)
    assert watcher.incr() == 2
    assert watcher.pids == [] and watcher.status() == "stopped"
    watcher.start()
    assert len(watcher.pids) == 2


def test_concurrent_incr_on_one_watcher_end_consistent(make_watcher):
    watcher = make_watcher(numprocesses=1)
    watcher.start()
    jobs = [gevent.spawn(watcher.incr, 1) for _ in range(5)]
    gevent.joinall(jobs, raise_error=True)
    assert watcher.numprocesses == 6
    assert len(watcher.pids) == 6


def test_singleton_ignores_incr_and_refuses_more_than_one():
    watcher = Watcher("single", "/bin/sleep 1000", singleton=True)
    try:
        watcher.start()
        assert watcher.incr(3) == 1 and len(watcher.pids) == 1
        with pytest.raises(ValueError):
            watcher.set_numprocesses(2)
    finally:
        watcher.stop()
    with pytest.raises(ValueError):
        Watcher("single", "/bin/sleep 1000", singleton=True, numprocesses=2)


def test_numprocesses_zero_starts_then_stops(make_watcher):
    watcher = make_watcher(numprocesses=0)
    rec = WatcherRecorder(watcher)
    watcher.start()
    assert watcher.status() == "stopped"
    assert rec.names() == ["stop"]


def test_graceful_reload_spawns_new_generation_before_stopping_old(make_watcher):
    watcher = make_watcher(numprocesses=2)
    rec = WatcherRecorder(watcher)
    watcher.start()
    old = set(watcher.pids)
    old_wids = {p.wid for p in watcher.processes.values()}
    result = watcher.reload()
    new = set(watcher.pids)
    assert len(new) == 2 and not (new & old)
    assert set(result["stopped"]) == old and set(result["started"]) == new
    assert not any(alive(p) for p in old)
    assert {p.wid for p in watcher.processes.values()}.isdisjoint(old_wids)
    names = rec.names()[3:]
    assert names[:2] == ["spawn", "spawn"] and names[-1] == "reload"


def test_sequential_reload_replaces_one_at_a_time(make_watcher):
    watcher = make_watcher(numprocesses=2)
    rec = WatcherRecorder(watcher)
    watcher.start()
    old = list(watcher.pids)
    watcher.reload(sequential=True)
    assert set(watcher.pids).isdisjoint(old) and len(watcher.pids) == 2
    names = [n for n in rec.names()[3:] if n != "kill"]
    assert names == ["reap", "spawn", "reap", "spawn", "reload"]


def test_send_hup_reload_signals_instead_of_respawning(make_watcher, tmp_path):
    marker = tmp_path / "hup"
    cmd = f"sh -c 'trap \"echo HUP >> {marker}\" HUP; while :; do sleep 0.05; done'"
    watcher = make_watcher(cmd=cmd, send_hup=True)
    watcher.start()
    pid = watcher.pids[0]
    wait_for(lambda: _ignores_or_catches(pid, signal.SIGHUP), message="trap installed")
    watcher.reload()
    wait_for(lambda: marker.exists() and "HUP" in marker.read_text(), message="SIGHUP received")
    assert watcher.pids == [pid]


def test_restart_gives_new_pids(make_watcher):
    watcher = make_watcher(numprocesses=2)
    watcher.start()
    old = set(watcher.pids)
    result = watcher.restart()
    assert set(result["stopped"]) == old
    assert set(watcher.pids).isdisjoint(old) and len(watcher.pids) == 2


def test_max_age_replaces_process_spawning_the_new_one_first(make_watcher):
    watcher = make_watcher(max_age=0.3, max_age_variance=0)
    rec = WatcherRecorder(watcher)
    watcher.start()
    first = watcher.pids[0]
    wait_for(lambda: rec.of("reap"), message="expiry")
    assert not alive(first)
    names = rec.names()
    assert names.index("spawn", 2) < names.index("reap")  # replacement first: no gap in service
    wait_for(lambda: len(watcher.pids) == 1 and watcher.pids[0] != first, message="replacement")


def _record_spawn_wids(watcher: Watcher) -> list[tuple[int, list[int]]]:
    """(wid, pids of other live processes holding that wid, retiring ones included) at each spawn."""
    seen: list[tuple[int, list[int]]] = []

    def on_event(event):
        if event.name != "spawn":
            return
        pid = event.fields["process_pid"]
        wid = watcher.processes[pid].wid
        others = [p.pid for p in list(watcher.processes.values()) + list(watcher._retiring.values())
                  if p.wid == wid and p.pid != pid and alive(p.pid)]
        seen.append((wid, others))
    watcher.subscribe(on_event)
    return seen


@pytest.mark.parametrize("cmd,uses_wid", [("/bin/sleep 1000", False),
                                          ("/bin/sleep 1000$(circus.wid)", True),
                                          ("/bin/sleep 1000$WID", True)])
def test_a_max_age_replacement_takes_the_wid_of_the_process_it_replaces(make_watcher, cmd, uses_wid):
    """$(circus.wid) stays within 1..numprocesses across max_age rotations (it grew 1,2 then 3,4...). A watcher
    that shows its wid to its processes never has two processes with one wid: it replaces old-first."""
    watcher = make_watcher(cmd=cmd, numprocesses=2, max_age=0.5, max_age_variance=0, graceful_timeout=5)
    assert watcher.uses_wid() is uses_wid
    seen = _record_spawn_wids(watcher)
    watcher.start()
    wait_for(lambda: len(seen) >= 8, timeout=30, message="three rounds of max_age replacements")
    assert {wid for wid, _ in seen} == {1, 2}, seen
    if uses_wid:
        assert all(not others for _, others in seen), seen


def test_uses_wid_looks_at_args_env_and_stream_file_names(make_watcher, tmp_path):
    assert not make_watcher().uses_wid()
    assert make_watcher("a", args=["--port", "80$(CIRCUS.WID)"]).uses_wid()
    assert make_watcher("e", env={"PORT": "80$(circus.wid)"}).uses_wid()
    assert make_watcher("s", stdout_stream={"class": "FileStream",
                                            "filename": str(tmp_path / "out.((circus.wid)).log")}).uses_wid()


def test_spawn_failure_fails_the_watcher_after_max_retry_without_spinning(make_watcher):
    watcher = make_watcher(cmd="/nonexistent/command", max_retry=3)
    rec = WatcherRecorder(watcher)
    cpu_before = os.times()
    watcher.start()
    assert watcher.status() == "backoff"  # the retry waits in the background: start returned, the lock is free
    assert watcher.wait_for_state({"failed"}, timeout=60) == "failed"
    cpu_after = os.times()
    assert "command not found" in watcher.reason and "3 spawn attempts failed" in watcher.reason
    assert rec.of("spawn") == []
    assert (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system) < 1.0


def test_stop_interrupts_a_long_start(make_watcher):
    watcher = make_watcher(numprocesses=5, warmup_delay=30)
    starter = gevent.spawn(watcher.start)
    wait_for(lambda: len(watcher.pids) == 1, message="first spawn")
    watcher.stop()
    starter.join(timeout=5)
    assert starter.ready()
    assert watcher.status() == "stopped" and watcher.pids == []


def test_different_watchers_do_not_wait_for_each_other(make_watcher):
    slow = make_watcher("slow", cmd=IGNORE_TERM, graceful_timeout=3)
    fast = make_watcher("fast")
    slow.start()
    wait_for(lambda: _ignores(slow.pids[0], signal.SIGTERM), message="child ignoring SIGTERM")
    stopping = gevent.spawn(slow.stop)
    wait_for(lambda: slow.status() == "stopping", message="slow stopping")
    fast.start()
    assert fast.status() == "active" and slow.status() == "stopping"
    stopping.join()


def test_kill_of_one_process_is_replaced(make_watcher):
    watcher = make_watcher(numprocesses=2)
    watcher.start()
    victim = watcher.pids[0]
    watcher.kill(victim, signal.SIGTERM)
    assert not alive(victim)
    wait_for(lambda: len(watcher.pids) == 2 and victim not in watcher.pids, message="replacement")


def test_options_lists_free_form_options_without_name_leak(make_watcher):
    watcher = make_watcher(options={"flapping.attempts": "3", "custom": "x"})
    options = dict(watcher.options())
    assert options["custom"] == "x" and options["flapping.attempts"] == "3"
    assert "__name__" not in options and options["numprocesses"] == 1


def _signal_mask(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    return 0


def _ignores(pid: int, sig: int) -> bool:
    return bool(_signal_mask(pid, "SigIgn") & (1 << (sig - 1)))


def _ignores_or_catches(pid: int, sig: int) -> bool:
    if not running_own_program(pid):  # a child not exec'd yet shows the test process's own handlers (SIGINT)
        return False
    bit = 1 << (sig - 1)
    if _signal_mask(pid, "SigCgt") & bit:
        return True
    # A shell's trap may live in its child loop; accept the handler in any descendant.
    from gcircus import linux
    return any(_signal_mask(child, "SigCgt") & bit for child in linux.descendants(pid))


def test_copy_env_child_running_as_another_user_gets_that_users_home(make_watcher, tmp_path):
    import pwd

    if os.geteuid() != 0:
        pytest.skip("switching users needs root")
    import shutil
    import tempfile
    from pathlib import Path

    shared = Path(tempfile.mkdtemp(prefix="gcircus-test-"))  # tmp_path's parents are private to root
    os.chmod(shared, 0o777)
    out = shared / "env.txt"
    cmd = f"sh -c 'echo $HOME:$USER:$LOGNAME:$KEEP > {out}; sleep 1000'"
    watcher = make_watcher(cmd=cmd, copy_env=True, uid="nobody", env={"KEEP": "configured"})
    watcher.start()
    wait_for(lambda: out.exists() and out.read_text().strip(), message="env written")
    home = pwd.getpwnam("nobody").pw_dir
    try:
        assert out.read_text().strip() == f"{home}:nobody:nobody:configured"
    finally:
        watcher.stop()
        shutil.rmtree(shared)


def test_rebuilding_watchers_does_not_grow_sys_path():
    before = list(sys.path)
    for _ in range(3):
        Watcher("w", "/bin/sleep 1", copy_env=True, copy_path=True)
    assert sys.path == before


def test_a_stop_does_not_wait_behind_an_old_first_max_age_rotation(make_watcher):
    """A watcher showing its wid replaces old-first: the expiring process was stopped holding the watcher's lock,
    so a stop (or quit) waited out graceful_timeout behind it instead of preempting."""
    cmd = "/bin/sh -c \"trap '' TERM; exec /bin/sleep 1000\" w$(circus.wid)"
    watcher = make_watcher(cmd=cmd, max_age=1, max_age_variance=0, graceful_timeout=60)
    assert watcher.uses_wid()
    rec = WatcherRecorder(watcher)
    watcher.start()
    first = watcher.pids[0]
    wait_for(lambda: rec.of("kill"), timeout=30, message="the max_age stop of the first process")
    assert alive(first)  # it ignores SIGTERM: the rotation now waits for its graceful_timeout
    stopper = gevent.spawn(watcher.stop, 0)
    stopper.join(timeout=30)
    assert stopper.ready(), "stop waited behind the max_age rotation"
    stopper.get()
    assert watcher.status() == "stopped" and watcher.pids == [] and not alive(first)


class _ShortOfFds:
    """`os` for gcircus.streams.outputs, whose dup fails with EMFILE while `short` is set (fd exhaustion)."""

    def __init__(self):
        self.short = True

    def __getattr__(self, name):
        return getattr(os, name)

    def dup(self, fd):
        if self.short:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return os.dup(fd)


def test_a_spawn_out_of_fds_for_its_output_kills_the_child_and_retries(make_watcher, tmp_path, monkeypatch):
    """Running out of fds after the fork (taking the child's output pipe) left the child running unsupervised and
    raised OSError out of start(); now the child is killed and reaped and the spawn is retried until fds are back."""
    fake_os = _ShortOfFds()
    monkeypatch.setattr(outputs, "os", fake_os)
    watcher = make_watcher(cmd="/bin/sleep 987654",
                           stdout_stream={"class": "FileStream", "filename": str(tmp_path / "out.log")})

    def ours() -> list[int]:
        found = []
        for child in psutil.Process().children(recursive=True):
            try:
                if "987654" in child.cmdline() and alive(child.pid):
                    found.append(child.pid)
            except psutil.Error:
                pass
        return found

    watcher.start()
    assert watcher.pids == []
    wait_for(lambda: watcher.respawn_policy.spawn_failures >= 3, timeout=30, message="spawn attempts failing")
    assert ours() == [], "a child was left running without a supervisor"
    fake_os.short = False
    wait_for(lambda: len(watcher.pids) == 1, timeout=30, message="a spawn once fds are back")
    wait_for(lambda: ours() == watcher.pids, message="only the supervised child running")
    watcher.stop()
    assert ours() == []


def test_settle_returns_once_the_exit_is_handled_and_the_replacement_runs(make_watcher):
    watcher = make_watcher(numprocesses=2)
    watcher.start()
    gone = watcher.pids[0]
    os.kill(gone, signal.SIGKILL)
    wait_for(lambda: gone not in watcher.processes, message="exit seen")
    watcher.settle()
    assert len(watcher.get_active_pids()) == 2 and gone not in watcher.pids


def test_settle_waits_out_a_stop_in_progress(make_watcher):
    watcher = make_watcher(cmd=IGNORE_TERM, graceful_timeout=60)
    watcher.start()
    [pid] = watcher.pids
    wait_for(lambda: _ignores(pid, signal.SIGTERM), message="SIGTERM ignored")
    stopping = gevent.spawn(watcher.stop)
    wait_for(watcher.is_stopping, message="stop in progress")
    with pytest.raises(TimeoutError, match="still busy"):
        watcher.settle(timeout=0.2)
    os.kill(pid, signal.SIGKILL)  # ends the stop
    watcher.settle()
    stopping.get(timeout=10)
    assert watcher.is_stopped() and watcher.pids == []
