"""Health checks end to end, on a Watcher with real children: a hung (SIGSTOPped) process found by a tcp check or by
its silent watchdog is replaced (new first beside siblings, stop first when alone or when its wid is its address),
its siblings are untouched, and nothing of it is left; a child pinging WATCHDOG=1 stays healthy.
"""
from __future__ import annotations

import os
import signal

import pytest

from tests.support.ports import free_wid_ports
from tests.support.processes import alive
from tests.support.readiness import Watchers, child, read_count, read_env
from tests.support.recorders import WatcherRecorder
from tests.support.waiting import wait_for

# Probed every 0.2 s; 2 failures in a row make a process unhealthy. A probe of a hung process times out after 1 s
# (its listen queue is full: see ready_child's tcp step).
TCP_HEALTH = {"health_interval": 0.2, "health_retries": 2, "health_timeout": 1}


@pytest.fixture
def make_watcher():
    made = Watchers()
    yield made
    made.stop_all()


def event_index(recorder: WatcherRecorder, name: str, pid: int) -> int:
    """Where the `name` event of `pid` is among the recorded events."""
    return next(i for i, (event, message) in enumerate(recorder.events)
                if event == name and message.get("process_pid") == pid)


def gone(pid: int) -> bool:
    """Reaped: not even a zombie is left (pids are not reused that fast)."""
    return not os.path.exists(f"/proc/{pid}")


def replacement_of(watcher, recorder: WatcherRecorder, hung: int, others: list[int]) -> int:
    """Wait until `hung` was reaped and a process of its wid runs in its place; return the new pid."""
    wait_for(lambda: any(m["process_pid"] == hung for m in recorder.of("reap")), 60, message="the hung one reaped")
    new = wait_for(lambda: [p for p in watcher.pids if p != hung and p not in others], 60, message="a replacement")
    assert len(new) == 1
    return new[0]


def tcp_watcher(make_watcher, numprocesses: int):
    prefix = free_wid_ports(numprocesses)
    check = f"tcp:127.0.0.1:{prefix}$(circus.wid)"
    return make_watcher(cmd=child(f"tcp={prefix}$(circus.wid)"), numprocesses=numprocesses, ready=check,
                        health=check, **TCP_HEALTH)


@pytest.mark.parametrize("numprocesses", [2, 1])
def test_a_sigstopped_process_fails_its_tcp_check_and_is_replaced_stop_first(make_watcher, numprocesses):
    # The command binds a port named by its wid, so the replacement (same wid) needs the port the hung process still
    # holds: it is stopped first, however many processes the watcher has (Watcher.uses_wid).
    watcher = tcp_watcher(make_watcher, numprocesses)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    assert watcher.status() == "active" and watcher.uses_wid()
    hung, *others = watcher.pids
    wid = next(r["wid"] for r in watcher.process_rows() if r["pid"] == hung)
    before = len(recorder.events)
    os.kill(hung, signal.SIGSTOP)

    wait_for(lambda: recorder.of("unhealthy"), 60, message="unhealthy")
    [unhealthy] = recorder.of("unhealthy")
    assert unhealthy["process_pid"] == hung and unhealthy["wid"] == wid
    assert unhealthy["detail"].startswith("2 health checks failed: tcp 127.0.0.1:")
    new = replacement_of(watcher, recorder, hung, others)
    assert event_index(recorder, "reap", hung) < event_index(recorder, "spawn", new)
    wait_for(lambda: any(m["process_pid"] == new for m in recorder.of("ready")), 60, message="replacement ready")
    assert gone(hung)
    assert sorted(watcher.pids) == sorted([new, *others]) and all(alive(p) for p in others)
    assert not [m for _, m in recorder.events[before:] if m.get("process_pid") in others]
    assert next(r for r in watcher.process_rows() if r["pid"] == new)["wid"] == wid
    assert watcher.status() == "active"


def pinging_watcher(make_watcher, tmp_path, numprocesses: int, count: str = ""):
    counter = f"{tmp_path}/pings-%PID%"  # one counter per process: the pid is not the wid
    return make_watcher(cmd=child(f"pings=0.2:{counter}{count}"), numprocesses=numprocesses, health="watchdog",
                        watchdog_sec=1)


def pings_of(tmp_path, pid: int) -> int:
    return read_count(tmp_path / f"pings-{pid}")


def test_a_sigstopped_process_goes_silent_and_is_replaced_new_first_beside_its_sibling(make_watcher, tmp_path):
    watcher = pinging_watcher(make_watcher, tmp_path, 2)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    assert not watcher.uses_wid()

    def both_pinging():
        """The two processes once each has pinged twice: on a loaded machine a child can take longer than
        watchdog_sec to start pinging, and is then rightly replaced; the test begins with two that ping."""
        pids = watcher.pids
        return len(pids) == 2 and all(pings_of(tmp_path, pid) >= 2 for pid in pids) and pids
    hung, other = wait_for(both_pinging, 60, message="both processes pinging")
    before = len(recorder.events)
    os.kill(hung, signal.SIGSTOP)

    def unhealthy_since():
        return [m for e, m in recorder.events[before:] if e == "unhealthy"]
    wait_for(unhealthy_since, 60, message="unhealthy")
    [unhealthy] = unhealthy_since()
    assert unhealthy["process_pid"] == hung and unhealthy["detail"] == "no WATCHDOG=1 within 1s"
    new = replacement_of(watcher, recorder, hung, [other])
    assert event_index(recorder, "spawn", new) < event_index(recorder, "reap", hung)  # new first
    assert gone(hung)
    assert sorted(watcher.pids) == sorted([new, other]) and alive(other)
    assert not [m for _, m in recorder.events[before:] if m.get("process_pid") == other]


def test_a_child_pinging_the_watchdog_stays_healthy_for_several_periods(make_watcher, tmp_path):
    env_file = tmp_path / "env.json"
    counter = tmp_path / "pings"
    watcher = make_watcher(cmd=child(f"env={env_file}", f"pings=0.2:{counter}"), health="watchdog", watchdog_sec=1)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    [pid] = watcher.pids
    env = read_env(env_file)
    assert env["WATCHDOG_USEC"] == "1000000" and env["NOTIFY_SOCKET"].startswith("@gcircus/")
    wait_for(lambda: read_count(counter) >= 20, 60, message="20 pings (4 watchdog periods)")
    assert watcher.pids == [pid] and "unhealthy" not in recorder.names()
    assert watcher.process_rows()[0]["state"] == "ready"


def test_a_child_that_stops_pinging_is_replaced(make_watcher, tmp_path):
    watcher = pinging_watcher(make_watcher, tmp_path, 1, count=":3")  # 3 pings, then silent (but alive)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    [silent] = watcher.pids
    wait_for(lambda: recorder.of("unhealthy"), 60, message="unhealthy")
    assert pings_of(tmp_path, silent) == 3
    assert recorder.of("unhealthy")[0] | {"time": 0} == {"time": 0, "process_pid": silent, "wid": 1,
                                                         "detail": "no WATCHDOG=1 within 1s"}
    new = replacement_of(watcher, recorder, silent, [])
    assert event_index(recorder, "reap", silent) < event_index(recorder, "spawn", new)  # alone: stopped first
    assert gone(silent)


def test_a_process_is_found_unhealthy_once_however_often_it_triggers_its_watchdog(make_watcher, tmp_path):
    # Five WATCHDOG=trigger in a burst, then silence: the process is replaced once, with one unhealthy event.
    triggers = [f"notify=WATCHDOG=trigger|STATUS={i}" for i in range(5)]
    # (Found unhealthy right after its spawn, a process counts as a crash: without check_flapping, two in a second
    # are paced rather than backed off, so both are replaced.)
    watcher = make_watcher(cmd=child(f"wait={tmp_path}/go-%PID%", *triggers), health="watchdog", watchdog_sec=60,
                           numprocesses=2, check_flapping=False)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    first, second = watcher.pids
    for pid in (first, second):  # the replacements wait for a file of their own, which never comes
        (tmp_path / f"go-{pid}").touch()
    wait_for(lambda: not {first, second} & set(watcher.pids) and len(watcher.pids) == 2, 60,
             message="both replaced")
    watcher.settle(timeout=60)
    unhealthy = [m["process_pid"] for m in recorder.of("unhealthy")]
    assert unhealthy.count(first) == 1 and unhealthy.count(second) == 1
    assert all(row["restarts"] == 1 for row in watcher.process_rows() if row["pid"] not in (first, second))
