"""Hooks: Circus's signature, return-value semantics, ignore flags, failures and timeouts that never wedge."""
from __future__ import annotations

import signal
import time

import pytest

from gcircus.watcher import Watcher
from tests.support import hookfuncs
from tests.support.processes import alive
from tests.support.recorders import WatcherRecorder
from tests.support.waiting import wait_for


@pytest.fixture(autouse=True)
def clear_calls():
    hookfuncs.CALLS.clear()
    hookfuncs.RELEASE.clear()
    yield
    hookfuncs.RELEASE.set()
    hookfuncs.CALLS.clear()


def make(hooks, **kwargs) -> Watcher:
    kwargs.setdefault("graceful_timeout", 5)
    return Watcher("hooked", "/bin/sleep 1000", hooks=hooks, **kwargs)


def names() -> list[str]:
    return [name for name, _ in hookfuncs.CALLS]


def test_every_lifecycle_hook_is_called_with_circus_kwargs():
    hooks = {name: ("tests.support.hookfuncs.record", False) for name in
             ("before_start", "after_start", "before_spawn", "after_spawn", "before_stop", "after_stop",
              "before_signal", "after_signal", "before_reap", "after_reap")}
    watcher = make(hooks)
    watcher.start()
    pid = watcher.pids[0]
    watcher.stop()
    assert names() == ["before_start", "before_spawn", "after_spawn", "after_start", "before_stop",
                       "before_signal", "after_signal", "before_reap", "after_reap", "after_stop"]
    kwargs = dict(hookfuncs.CALLS)
    assert kwargs["after_spawn"] == {"pid": pid}
    assert kwargs["before_signal"] == {"pid": pid, "signum": signal.SIGTERM}
    assert kwargs["before_reap"]["process_pid"] == pid and "time" in kwargs["before_reap"]
    assert kwargs["after_reap"]["exit_code"] == -signal.SIGTERM


def test_falsy_before_start_aborts_start():
    watcher = make({"before_start": ("tests.support.hookfuncs.refuse", False)})
    rec = WatcherRecorder(watcher)
    watcher.start()
    assert watcher.status() == "stopped" and watcher.pids == []
    assert rec.names() == ["hook_success"]


def test_none_counts_as_failure_like_circus():
    watcher = make({"before_start": ("tests.support.hookfuncs.returns_none", False)})
    watcher.start()
    assert watcher.status() == "stopped"


def test_falsy_after_start_stops_watcher():
    watcher = make({"after_start": ("tests.support.hookfuncs.refuse", False)})
    rec = WatcherRecorder(watcher)
    watcher.start()
    assert watcher.status() == "stopped" and watcher.pids == []
    assert "stop" in rec.names()


def test_falsy_after_spawn_kills_process_and_stops_watcher():
    watcher = make({"after_spawn": ("tests.support.hookfuncs.refuse", False)})
    watcher.start()
    pid = hookfuncs.CALLS[0][1]["pid"]
    wait_for(lambda: not alive(pid), message="refused process killed")
    assert watcher.status() == "stopped"


def test_raising_hook_publishes_failure_and_aborts_unless_ignored():
    watcher = make({"before_start": ("tests.support.hookfuncs.explode", False)})
    rec = WatcherRecorder(watcher)
    watcher.start()
    assert watcher.status() == "stopped"
    failure = rec.of("hook_failure")[0]
    assert failure["name"] == "before_start" and "hook exploded" in failure["error"]

    ignoring = make({"before_start": ("tests.support.hookfuncs.explode", True)})
    try:
        ignoring.start()
        assert ignoring.status() == "active"
    finally:
        ignoring.stop()


def test_failing_before_stop_is_ignored_by_default():
    watcher = make({"before_stop": ("tests.support.hookfuncs.explode", False)})
    watcher.start()
    pid = watcher.pids[0]
    watcher.stop()
    assert watcher.status() == "stopped" and not alive(pid)


def test_hook_past_its_timeout_is_abandoned_and_counts_as_failure():
    watcher = make({"before_start": ("tests.support.hookfuncs.hang", False)}, hook_timeout=0.2)
    rec = WatcherRecorder(watcher)
    began = time.monotonic()
    watcher.start()
    assert time.monotonic() - began < 10
    assert watcher.status() == "stopped"
    assert "timed out" in rec.of("hook_failure")[0]["error"]


def test_blocking_hook_does_not_block_other_watchers():
    import gevent

    slow = make({"before_start": ("tests.support.hookfuncs.hang", True)}, hook_timeout=1)
    other = Watcher("other", "/bin/sleep 1000")
    try:
        job = gevent.spawn(slow.start)
        wait_for(lambda: names() == ["before_start"], message="hook running")
        other.start()
        assert other.status() == "active" and not job.ready()
        job.join()
        assert slow.status() == "active"
    finally:
        other.stop()
        slow.stop()


def test_before_signal_refusal_suppresses_signal_but_sigkill_still_sent():
    watcher = make({"before_signal": ("tests.support.hookfuncs.refuse", False)}, graceful_timeout=0.3)
    rec = WatcherRecorder(watcher)
    watcher.start()
    pid = watcher.pids[0]
    watcher.stop()
    assert not alive(pid)
    assert rec.of("reap")[0]["exit_code"] == -signal.SIGKILL  # SIGTERM suppressed, SIGKILL after the timeout
    assert len(rec.of("kill")) == 2


def test_unknown_hook_name_or_import_error_refuses_to_build():
    with pytest.raises(ValueError, match="unknown hook"):
        make({"before_explode": ("tests.support.hookfuncs.record", False)})
    with pytest.raises(ValueError, match="cannot import"):
        make({"before_start": ("tests.support.hookfuncs.nope", False)})


def test_hook_reads_watcher_state():
    seen = {}

    def spy(watcher, arbiter, hook_name, **kwargs):
        seen["name"] = watcher.name
        seen["pids"] = list(watcher.pids)
        return True

    watcher = make({"after_start": (spy, False)}, numprocesses=2)
    try:
        watcher.start()
        assert seen["name"] == "hooked" and sorted(seen["pids"]) == sorted(watcher.pids)
    finally:
        watcher.stop()
