"""Readiness end to end, on a Watcher with real children: sd_notify (READY, STATUS, RELOADING, EXTEND_TIMEOUT_USEC,
a foreign sender, a grandchild), fd:N, tcp, http and exec checks, and a child never ready within ready_timeout.

Every child waits for a file the test creates before it becomes ready, so "not ready yet" is a state the test
observes, not a moment it hopes to catch.
"""
from __future__ import annotations

import os
import socket

import gevent
import pytest

from tests.support import hookfuncs
from tests.support.ports import free_port, free_wid_ports
from tests.support.processes import alive, children
from tests.support.readiness import Watchers, child, read_count, read_env, row, wait_row
from tests.support.recorders import WatcherRecorder
from tests.support.waiting import wait_for


@pytest.fixture
def make_watcher():
    made = Watchers()
    yield made
    made.stop_all()


def start_in_background(watcher) -> gevent.Greenlet:
    """watcher.start() in a greenlet the test joins (it returns only once the processes are ready)."""
    return gevent.spawn(watcher.start)


def names(recorder: WatcherRecorder, *wanted: str) -> list[str]:
    return [name for name in recorder.names() if name in wanted]


def test_notify_child_is_spawned_until_ready_1_then_start_returns_active_with_its_status(make_watcher, tmp_path):
    go = tmp_path / "go"
    watcher = make_watcher(cmd=child("notify=STATUS=warming up", f"wait={go}", "notify=READY=1|STATUS=serving"),
                           ready="notify")
    recorder = WatcherRecorder(watcher, lifecycle=True)
    starting = start_in_background(watcher)
    try:
        waiting = wait_row(watcher, "STATUS=warming up", status="warming up")
        assert waiting["state"] == "spawned" and waiting["ready_at"] is None
        assert watcher.status() == "starting" and not starting.ready()
        assert "ready" not in recorder.names()
        go.touch()
        result = starting.get(timeout=30)
    finally:
        starting.kill()
    assert watcher.status() == "active"
    assert result["started"] == watcher.pids
    ready = row(watcher)
    assert ready["state"] == "ready" and ready["status"] == "serving" and ready["detail"] == "READY=1"
    [event] = recorder.of("ready")
    assert event["process_pid"] == ready["pid"] and event["wid"] == 1
    # The ready event comes before the watcher's start and its move to active.
    assert names(recorder, "ready", "start")[-2:] == ["ready", "start"]
    assert [m["state"] for m in recorder.of("state")][-1] == "active"


def test_reloading_then_ready_publishes_not_ready_then_ready(make_watcher, tmp_path):
    reloading, again = tmp_path / "reloading", tmp_path / "again"
    watcher = make_watcher(cmd=child("notify=READY=1", f"wait={reloading}", "notify=RELOADING=1|STATUS=reloading",
                                     f"wait={again}", "notify=READY=1|STATUS=reloaded"), ready="notify")
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    pid = watcher.pids[0]
    reloading.touch()
    wait_for(lambda: recorder.of("not_ready"), 30, message="not_ready")
    assert row(watcher)["state"] == "spawned"
    again.touch()
    wait_for(lambda: len(recorder.of("ready")) == 2, 30, message="ready again")
    assert names(recorder, "ready", "not_ready") == ["ready", "not_ready", "ready"]
    [not_ready] = recorder.of("not_ready")
    assert not_ready["process_pid"] == pid and not_ready["detail"] == "RELOADING=1"
    assert row(watcher)["state"] == "ready" and row(watcher)["status"] == "reloaded"
    assert watcher.pids == [pid] and watcher.status() == "active"


def test_extend_timeout_usec_keeps_a_slow_child_past_ready_timeout(make_watcher):
    # ready_timeout is 2 s; the child asks for 60 s more, then takes 3 s. Without the extension it would be
    # stopped at 2 s (test_never_ready... shows that).
    watcher = make_watcher(cmd=child("notify=EXTEND_TIMEOUT_USEC=60000000", "sleep=3", "notify=READY=1"),
                           ready="notify", ready_timeout=2)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    assert watcher.status() == "active"
    [spawn] = recorder.of("spawn")
    [ready] = recorder.of("ready")
    assert ready["process_pid"] == spawn["process_pid"] == watcher.pids[0]
    assert "reap" not in recorder.names()


def test_a_datagram_from_a_process_not_the_watchers_is_ignored(make_watcher, tmp_path):
    env_file, go = tmp_path / "env.json", tmp_path / "go"
    watcher = make_watcher(cmd=child(f"env={env_file}", f"wait={go}", "notify=STATUS=mine"), ready="notify")
    starting = start_in_background(watcher)
    try:
        address = read_env(env_file)["NOTIFY_SOCKET"]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stranger:  # this test process: not supervised
            stranger.sendto(b"READY=1\nSTATUS=forged", "\0" + address[1:])
        go.touch()
        # The child's own message is read after the stranger's (one socket, in order).
        shown = wait_row(watcher, "the child's STATUS", status="mine")
        assert shown["state"] == "spawned" and watcher.status() == "starting" and not starting.ready()
    finally:
        starting.kill()


def test_ready_1_from_a_grandchild_counts_for_its_supervised_ancestor(make_watcher, tmp_path):
    go = tmp_path / "go"
    script = child(f"wait={go}", "notify=READY=1|STATUS=from the grandchild")
    watcher = make_watcher(cmd="/bin/sh", args=["-c", f"{script}; exit 0"], ready="notify")
    starting = start_in_background(watcher)
    try:
        shell = wait_for(lambda: watcher.pids, 30, message="the shell")[0]
        [python] = wait_for(lambda: children(shell), 30, message="the shell's child")
        go.touch()
        starting.get(timeout=30)
    finally:
        starting.kill()
    assert python != shell and alive(python)
    assert watcher.pids == [shell] and watcher.status() == "active"
    assert row(watcher)["state"] == "ready" and row(watcher)["status"] == "from the grandchild"


def test_fd_child_is_ready_once_it_writes_a_newline(make_watcher, tmp_path):
    go = tmp_path / "go"
    watcher = make_watcher(cmd=child(f"wait={go}", "fd=5"), ready="fd:5", numprocesses=2)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    starting = start_in_background(watcher)
    try:
        wait_for(lambda: len(watcher.pids) == 2, 30, message="two processes")
        assert all(r["state"] == "spawned" for r in watcher.process_rows()) and watcher.status() == "starting"
        go.touch()
        starting.get(timeout=30)
    finally:
        starting.kill()
    assert watcher.status() == "active"
    assert all(r["state"] == "ready" and r["detail"] == "fd 5 got a newline" for r in watcher.process_rows())
    assert sorted(m["process_pid"] for m in recorder.of("ready")) == sorted(watcher.pids)


def test_tcp_check_waits_for_each_workers_own_port(make_watcher, tmp_path):
    prefix = free_wid_ports(2)
    go = tmp_path / "go"
    watcher = make_watcher(cmd=child(f"wait={go}-$(circus.wid)", f"tcp={prefix}$(circus.wid)"), numprocesses=2,
                           ready=f"tcp:127.0.0.1:{prefix}$(circus.wid)")
    starting = start_in_background(watcher)
    try:
        wait_for(lambda: len(watcher.pids) == 2, 30, message="two processes")
        first = wait_row(watcher, "a refused probe of wid 1", watcher.process_rows()[0]["pid"],
                         detail=f"tcp 127.0.0.1:{prefix}1 refused")
        (tmp_path / "go-1").touch()
        wait_row(watcher, "wid 1 ready", first["pid"], state="ready")
        second = next(r for r in watcher.process_rows() if r["wid"] == 2)
        assert second["state"] == "spawned" and watcher.status() == "starting"
        (tmp_path / "go-2").touch()
        starting.get(timeout=30)
    finally:
        starting.kill()
    assert watcher.status() == "active"
    details = {r["wid"]: r["detail"] for r in watcher.process_rows()}
    assert details == {wid: f"tcp 127.0.0.1:{prefix}{wid} accepted" for wid in (1, 2)}


def test_http_check_waits_for_a_2xx(make_watcher, tmp_path):
    port, ok = free_port(), tmp_path / "ok"
    watcher = make_watcher(cmd=child(f"http={port}:{ok}"), ready=f"http://127.0.0.1:{port}/health")
    starting = start_in_background(watcher)
    try:
        wait_row(watcher, "a 503", detail="http 503", state="spawned")
        assert watcher.status() == "starting"
        ok.touch()
        starting.get(timeout=30)
    finally:
        starting.kill()
    assert watcher.status() == "active"
    assert row(watcher)["state"] == "ready" and row(watcher)["detail"] == "http 200"


def test_exec_check_runs_with_the_workers_wid(make_watcher, tmp_path):
    watcher = make_watcher(cmd=child(), numprocesses=2, ready=f"exec:test -e {tmp_path}/ready-$(circus.wid)")
    starting = start_in_background(watcher)
    try:
        wait_for(lambda: len(watcher.pids) == 2, 30, message="two processes")
        wait_for(lambda: all(r["detail"] == "exec exited 1" for r in watcher.process_rows()), 30,
                 message="failing probes")
        (tmp_path / "ready-2").touch()
        second = wait_for(lambda: next((r for r in watcher.process_rows() if r["wid"] == 2 and
                                        r["state"] == "ready"), None), 30, message="wid 2 ready")
        first = next(r for r in watcher.process_rows() if r["wid"] == 1)
        assert first["state"] == "spawned" and watcher.status() == "starting"
        (tmp_path / "ready-1").touch()
        starting.get(timeout=30)
    finally:
        starting.kill()
    assert watcher.status() == "active" and second["detail"] == "exec exited 0"


FLAPPING = {"attempts": 2, "window": 60, "retry_in": 0.1, "max_retry": 1}


def test_never_ready_child_is_stopped_counts_as_a_crash_and_the_watcher_fails_then_restarts(
        make_watcher, tmp_path, caplog):
    go = tmp_path / "go"
    # Ready only once the file exists: before it, every start times out; after it, a start succeeds.
    watcher = make_watcher("slow", cmd=child(f"wait={go}", "notify=READY=1"), ready="notify", ready_timeout=1,
                           flapping=FLAPPING, graceful_timeout=1)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    watcher.wait_for_state({"failed"}, timeout=60)
    spawned = [m["process_pid"] for m in recorder.of("spawn")]
    # attempts (2) per crash loop, the first loop plus max_retry (1) retries: then it gave up.
    assert len(spawned) == 4 and "ready" not in recorder.names()
    assert "crash loop" in watcher.reason
    assert all(not alive(pid) for pid in spawned)
    assert {m["process_pid"] for m in recorder.of("reap")} == set(spawned)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "did not become ready" in
                r.getMessage()]
    assert any(f"watcher 'slow': pid {spawned[0]} did not become ready: no READY=1 within 1s" in w for w in warnings)
    assert watcher.process_rows() == []

    go.touch()
    watcher.start()
    assert watcher.status() == "active"
    shown = row(watcher)
    assert shown["state"] == "ready" and shown["pid"] not in spawned
    assert shown["last_exit"]["description"] == "not ready: no READY=1 within 1s"
    assert shown["restarts"] >= 2


def test_not_ready_reason_is_shown_per_process_while_it_is_stopped(make_watcher, tmp_path):
    # A child that ignores SIGTERM keeps its row (state stopping) while its stop is under way.
    watcher = make_watcher(cmd=child("ignore=TERM"), ready="notify", ready_timeout=1, graceful_timeout=60)
    starting = start_in_background(watcher)
    try:
        pid = wait_for(lambda: watcher.pids, 30, message="a process")[0]
        stopping = wait_row(watcher, "stopped for not being ready", pid, state="stopping")
        assert stopping["detail"] == "no READY=1 within 1s"
    finally:
        starting.kill()
        watcher.stop(graceful_timeout=0)


def test_children_of_other_watchers_never_see_a_notify_socket(make_watcher, tmp_path, monkeypatch):
    # gcircusd's own service manager's variables (systemd's), inherited by a copy_env watcher's environment.
    monkeypatch.setenv("NOTIFY_SOCKET", "@systemd-notify-of-gcircusd")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    plain = make_watcher("plain", cmd=child(f"env={tmp_path}/plain.json"), copy_env=True)
    first = make_watcher("first", cmd=child(f"env={tmp_path}/first.json", "notify=READY=1"), ready="notify",
                         copy_env=True)
    second = make_watcher("second", cmd=child(f"env={tmp_path}/second.json", "notify=READY=1"), ready="notify")
    for watcher in (plain, first, second):
        watcher.start()
        assert watcher.status() == "active"
    plain_env = read_env(tmp_path / "plain.json")
    assert "NOTIFY_SOCKET" not in plain_env and "WATCHDOG_USEC" not in plain_env
    assert plain_env["PATH"] == os.environ["PATH"]  # copy_env did copy gcircusd's environment
    sockets = {name: read_env(tmp_path / f"{name}.json")["NOTIFY_SOCKET"] for name in ("first", "second")}
    assert sockets["first"] != sockets["second"]
    assert all(value.startswith("@gcircus/") for value in sockets.values())
    assert "WATCHDOG_USEC" not in read_env(tmp_path / "first.json")


def test_incr_returns_once_the_new_process_is_ready(make_watcher, tmp_path):
    (tmp_path / "go-1").touch()
    watcher = make_watcher(cmd=child(f"wait={tmp_path}/go-$(circus.wid)", "notify=READY=1"), ready="notify")
    watcher.start()
    adding = gevent.spawn(watcher.incr)
    try:
        wait_for(lambda: len(watcher.pids) == 2, 30, message="the second process")
        new = next(r for r in watcher.process_rows() if r["wid"] == 2)
        assert new["state"] == "spawned" and not adding.ready()
        (tmp_path / "go-2").touch()
        assert adding.get(timeout=30) == 2
    finally:
        adding.kill()
    assert [r["state"] for r in watcher.process_rows()] == ["ready", "ready"]


def test_reload_stops_the_old_process_only_once_its_replacement_is_ready(make_watcher, tmp_path):
    (tmp_path / "go-1").touch()
    watcher = make_watcher(cmd=child(f"wait={tmp_path}/go-$(circus.wid)", "notify=READY=1"), ready="notify")
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    [old] = watcher.pids
    reloading = gevent.spawn(watcher.reload)
    try:
        new = wait_for(lambda: [r for r in watcher.process_rows() if r["pid"] != old], 30, message="the new one")[0]
        assert new["wid"] == 2 and new["state"] == "spawned"  # the old one keeps wid 1 until it is gone
        assert "kill" not in recorder.names() and not reloading.ready() and alive(old)
        (tmp_path / f"go-{new['wid']}").touch()
        result = reloading.get(timeout=30)
    finally:
        reloading.kill()
    assert result["stopped"] == [old] and result["started"] == [new["pid"]]
    assert names(recorder, "ready", "kill")[-2:] == ["ready", "kill"]
    assert watcher.pids == [new["pid"]] and watcher.status() == "active"


def test_a_child_that_closes_its_ready_fd_counts_as_a_failed_start(make_watcher):
    watcher = make_watcher("closer", cmd=child("exit=0"), ready="fd:5", flapping=FLAPPING)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    watcher.wait_for_state({"failed"}, timeout=60)
    assert len(recorder.of("spawn")) == 4 and "ready" not in recorder.names()
    assert "crash loop" in watcher.reason


def test_a_notify_child_crashing_before_ready_ends_failed(make_watcher):
    watcher = make_watcher("crasher", cmd=child("notify=STATUS=about to crash", "exit=3"), ready="notify",
                           flapping=FLAPPING)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    watcher.wait_for_state({"failed"}, timeout=60)
    assert len(recorder.of("spawn")) == 4 and "ready" not in recorder.names()
    assert {m["exit_code"] for m in recorder.of("reap")} == {3}


@pytest.mark.parametrize("checks", [{"health": "watchdog", "watchdog_sec": 60},
                                    {"ready": "exec:true", "health": "watchdog", "watchdog_sec": 60}])
def test_reloading_then_ready_makes_the_process_ready_again_whatever_its_readiness_check(make_watcher, tmp_path,
                                                                                        checks):
    # With health = watchdog the child has the notify socket whatever `ready` is; a RELOADING=1 makes it not
    # ready, so its READY=1 must make it ready again (it stayed `spawned` for ever).
    reloading, again = tmp_path / "reloading", tmp_path / "again"
    watcher = make_watcher(cmd=child(f"wait={reloading}", "notify=RELOADING=1", f"wait={again}",
                                     "notify=READY=1|STATUS=reloaded"), **checks)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    reloading.touch()
    wait_for(lambda: recorder.of("not_ready"), 30, message="not_ready")
    again.touch()
    wait_for(lambda: len(recorder.of("ready")) == 2, 30, message="ready again")
    assert names(recorder, "ready", "not_ready") == ["ready", "not_ready", "ready"]
    assert row(watcher)["state"] == "ready" and row(watcher)["status"] == "reloaded"


def test_ready_1_after_stopping_1_leaves_the_process_stopping(make_watcher, tmp_path):
    watcher = make_watcher(cmd=child("notify=READY=1", f"wait={tmp_path}/go", "notify=STOPPING=1",
                                     "notify=READY=1|STATUS=said ready again"), ready="notify")
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    (tmp_path / "go").touch()
    wait_row(watcher, "the last message", status="said ready again")
    assert row(watcher)["state"] == "stopping" and len(recorder.of("ready")) == 1


SLOW_AFTER_SPAWN = {"after_spawn": "tests.support.hookfuncs.wait_for_files"}


def test_ready_1_sent_before_the_spawn_is_over_counts(make_watcher, tmp_path, monkeypatch):
    # The after_spawn hook returns only once the child said READY=1: the message came before the watcher followed
    # the process (as from a fast child while Popen waits for the exec). It was dropped, and the process stopped
    # at its ready_timeout.
    sent = tmp_path / "sent"
    monkeypatch.setattr(hookfuncs, "WAIT_FOR", [str(sent)])
    watcher = make_watcher(cmd=child("notify=READY=1|STATUS=early", f"touch={sent}"), ready="notify",
                           ready_timeout=30, hooks=SLOW_AFTER_SPAWN)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    assert watcher.status() == "active"
    assert row(watcher)["state"] == "ready" and row(watcher)["status"] == "early"
    assert names(recorder, "spawn", "ready") == ["spawn", "ready"]


def test_stop_ends_a_start_waiting_for_readiness(make_watcher):
    watcher = make_watcher(cmd=child(), ready="notify", ready_timeout=0)  # never ready, no time limit
    starting = start_in_background(watcher)
    try:
        [pid] = wait_for(lambda: watcher.pids, 30, message="the process")
        assert row(watcher)["state"] == "spawned"
        watcher.stop()
        starting.get(timeout=30)
    finally:
        starting.kill()
    assert watcher.status() == "stopped" and not alive(pid) and watcher.process_rows() == []


def test_checks_take_placeholders_from_the_watchers_env(make_watcher, tmp_path):
    port, accepted = free_port(), tmp_path / "accepted"
    watcher = make_watcher(cmd=child(f"tcp={port}:{accepted}"), env={"PORT": str(port)}, ready="tcp:127.0.0.1:$PORT",
                           health="tcp:127.0.0.1:$(circus.env.PORT)", health_interval=0.1, health_retries=1)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    assert watcher.status() == "active" and row(watcher)["detail"] == f"tcp 127.0.0.1:{port} accepted"
    [pid] = watcher.pids
    wait_for(lambda: read_count(accepted) >= 5, 30, message="the readiness probe, then health probes")
    assert "unhealthy" not in recorder.names() and watcher.pids == [pid]
