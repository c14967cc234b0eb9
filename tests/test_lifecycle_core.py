"""The watcher lifecycle with real children: every move is one the table allows and is published with its reason,
one respawn policy decides back-off and failure for crash loops, spawn failures and processes never ready, and
whoever waits for a watcher (a start, start-up, a dependent) gets an answer once it settles."""
from __future__ import annotations

import pytest

from gcircus.arbiter import Arbiter
from gcircus.control import settling
from gcircus.states import ACTIVE, BACKOFF, FAILED, STARTING, STOPPED, STOPPING
from gcircus.wire.errors import CommandError
from tests.support.processes import alive
from tests.support.readiness import Watchers, child
from tests.support.recorders import WatcherRecorder
from tests.support.waiting import wait_for

FAST = {"attempts": 2, "window": 3.0, "retry_in": 0.2, "max_retry": 2}


@pytest.fixture
def make_watcher():
    made = Watchers()
    yield made
    made.stop_all()


def moves(recorder: WatcherRecorder) -> list[tuple[str, str]]:
    return [(m["previous"], m["state"]) for m in recorder.of("state") if m["previous"] != m["state"]]


def test_every_move_is_published_with_the_previous_state(make_watcher):
    watcher = make_watcher(numprocesses=2)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    watcher.stop()
    assert moves(recorder) == [(STOPPED, STARTING), (STARTING, ACTIVE), (ACTIVE, STOPPING), (STOPPING, STOPPED)]
    # Each process is published ready (at once with ready = none) between its spawn and the watcher's start.
    names = recorder.names()
    assert names.index("ready") > names.index("spawn") and names.count("ready") == 2
    assert names.index("start") > max(i for i, name in enumerate(names) if name == "ready")


def test_a_crash_loop_backs_off_then_fails_and_a_start_begins_afresh(make_watcher):
    watcher = make_watcher(cmd="false", flapping=FAST)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    assert watcher.wait_for_state({FAILED}, timeout=60) == FAILED
    assert moves(recorder).count((STOPPING, BACKOFF)) == FAST["max_retry"]
    assert moves(recorder)[-1] == (STOPPING, FAILED)
    backoffs = [m["reason"] for m in recorder.of("state") if m["state"] == BACKOFF]
    assert "crash loop (2 exits within 3s), retry 1 of 2; retrying in 0.2s" in backoffs[0]
    assert "after 2 back-offs" in watcher.reason
    # Failed stays failed: nothing restarts it (its retry timer is gone, and no task is left).
    watcher.settle(timeout=30)
    assert watcher.status() == FAILED and watcher._retry_timer is None
    spawns = len(recorder.of("spawn"))
    watcher.start()  # an operator's start: a fresh count, a whole cycle again
    assert watcher.wait_for_state({FAILED}, timeout=60) == FAILED
    assert len(recorder.of("spawn")) == 2 * spawns


def test_a_command_that_cannot_spawn_backs_off_without_a_stop_then_fails(make_watcher):
    watcher = make_watcher(cmd="/nonexistent/program", max_retry=3)
    recorder = WatcherRecorder(watcher, lifecycle=True)
    watcher.start()
    assert watcher.wait_for_state({FAILED}, timeout=60) == FAILED
    assert moves(recorder)[:2] == [(STOPPED, STARTING), (STARTING, BACKOFF)]
    assert moves(recorder).count((BACKOFF, STARTING)) == 2  # attempts 2 and 3 are retries after a back-off
    assert "stop" not in recorder.names()[:-1]  # nothing ran: nothing to stop until it gives up
    assert "cannot spawn: command not found" in watcher.reason


def test_a_start_is_settled_once_active_or_failed_naming_the_watcher_and_the_cause(make_watcher):
    good = make_watcher("good")
    assert settling.settled(good, good.submit_start()).get(timeout=30) == {"started": good.pids, "kept": []}
    bad = make_watcher("bad", cmd="/nonexistent/program", max_retry=2)
    result = settling.settled(bad, bad.submit_start())
    bad.wait_for_state({BACKOFF}, timeout=30)
    assert not result.ready()  # a back-off that may still end is no answer yet
    with pytest.raises(CommandError, match=r"watcher 'bad' failed: cannot spawn: command not found"):
        result.get(timeout=60)


def test_a_dependent_waits_in_starting_and_says_for_what(make_watcher):
    arbiter = Arbiter([], background=True)
    db = make_watcher("db", cmd="/nonexistent/program", max_retry=1)
    app = make_watcher("app", depends_on="db")
    for watcher in (db, app):
        arbiter.register(watcher)
    app.start()
    assert app.status() == STARTING and app.pids == []
    assert "waiting for 'db' (stopped)" in app.reason
    db.start()
    db.wait_for_state({FAILED}, timeout=60)
    wait_for(lambda: "which failed" in app.reason, message="the dependent told its dependency failed")
    assert app.status() == STARTING and app.pids == [] and "'db' (failed, which failed)" in app.reason
    assert app.start_problem() == "watcher 'app' waits for 'db', which failed"
    db.set_options({"cmd": "/bin/sleep 1000"})
    db.start()
    app.wait_for_state({ACTIVE}, timeout=60)
    assert len(app.pids) == 1 and app.reason == ""


def test_wait_started_reports_the_failed_and_the_endless(make_watcher):
    arbiter = Arbiter([], background=True)
    for watcher in [make_watcher("ok"), make_watcher("broken", cmd="/nonexistent/a", max_retry=2),
                    make_watcher("forever", cmd="/nonexistent/b", max_retry=-1)]:
        arbiter.register(watcher)
    arbiter.start()
    try:
        failed, retrying = arbiter.wait_started()
        assert [name for name, _ in failed] == ["broken"] and "cannot spawn" in failed[0][1]
        assert [name for name, _ in retrying] == ["forever"]
        assert arbiter.get_watcher("ok").status() == ACTIVE
    finally:
        arbiter.stop()


def test_a_reload_to_a_version_that_never_gets_ready_keeps_the_established_processes(make_watcher, tmp_path):
    version_ok = tmp_path / "version-ok"
    version_ok.touch()
    watcher = make_watcher(cmd=child(f"wait={version_ok}", "fd=3"), numprocesses=2, ready="fd:3", ready_timeout=1,
                           flapping={**FAST, "max_retry": 5})
    recorder = WatcherRecorder(watcher, lifecycle=True)
    old = sorted(watcher.start()["started"])
    assert watcher.status() == ACTIVE
    # Established: ready, and older than the flapping window (a crash loop of new processes is not theirs).
    wait_for(lambda: all(r["age"] >= FAST["window"] for r in watcher.process_rows()), 30, message="established")
    version_ok.unlink()  # the new version never gets ready: each new process is stopped at its ready_timeout
    assert watcher.reload() == {"stopped": [], "started": [], "kept": old}
    wait_for(lambda: "new processes keep failing" in watcher.reason, 60, message="the crash loop of new processes")
    watcher.settle(timeout=60)
    assert sorted(watcher.pids) == old and watcher.status() == ACTIVE and all(alive(pid) for pid in old)
    assert STOPPING not in [m["state"] for m in recorder.of("state")]  # the old ones were never stopped
    assert len(recorder.of("spawn")) == 4  # the two failed replacements: nothing is missing, nothing respawns


def test_processes_unhealthy_right_after_their_spawn_are_a_crash_loop(make_watcher):
    watcher = make_watcher(cmd=child("notify=WATCHDOG=trigger"), health="watchdog", watchdog_sec=60, flapping=FAST)
    watcher.start()
    assert watcher.wait_for_state({FAILED}, timeout=60) == FAILED
    assert "crash loop" in watcher.reason
