"""A crash loop end to end, with a real gcircusd and real children: the watcher backs off in sight (state events on
the PUB channel, `status`, `procs`, gcircusctl), ends `failed` after flapping.max_retry back-offs, and an operator
starts it again once its command works."""
from __future__ import annotations

import time

import pytest

from gcircus.cli.gcircusctl import main as gcircusctl
from tests.support.lifecycle import StateEvents

# Crashes at once until the `ok` file exists; then runs.
CRASH_LOOP = """
    [watcher:crash]
    cmd = sh -c 'test -e {ok} && exec sleep 1000; exit 1'
    autostart = false
    graceful_timeout = 2
    flapping.window = 3
    flapping.retry_in = {retry_in}
    flapping.max_retry = {max_retry}
"""
# One process that crashes twice within the window: start, active, the back-off's stop, back off; twice; then the
# third crash loop is one too many.
A_LOOP = [("starting", "active"), ("active", "stopping")]
TO_FAILED = [("stopped", "starting"), *A_LOOP, ("stopping", "backoff"), ("backoff", "starting"), *A_LOOP,
             ("stopping", "backoff"), ("backoff", "starting"), *A_LOOP, ("stopping", "failed")]


@pytest.fixture
def crash_loop(gcircusd, tmp_path):
    """gcircusd with the stopped `crash` watcher; `crash_loop(retry_in, max_retry)` -> (running, ok file, events)."""
    subscriptions = []

    def start(retry_in: float = 0.2, max_retry: int = 2):
        ok = tmp_path / "ok"
        running = gcircusd(CRASH_LOOP.format(ok=ok, retry_in=retry_in, max_retry=max_retry))
        events = StateEvents(running, "crash").live()
        subscriptions.append(events)
        return running, ok, events

    yield start
    for events in subscriptions:
        events.close()


def ctl(capsys, running, *argv: str) -> tuple[int, str, str]:
    code = gcircusctl(["--endpoint", running.endpoint, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_crash_loop_backs_off_then_fails_and_every_move_is_published(crash_loop, capsys):
    running, _, events = crash_loop()
    running.call("start", name="crash")
    assert events.until("failed") == TO_FAILED
    assert events.reason_of("backoff") == "crash loop (2 exits within 3s), retry 1 of 2; retrying in 0.2s"
    reason = events.moves[-1][2]
    assert reason.startswith("crash loop: 2 exits within 3s, after 2 back-offs"), reason
    # Circus clients see the word; gcircusctl's status of every watcher says why.
    assert running.call("status", name="crash")["status"] == "failed"
    every = running.call("status")
    assert every["statuses"] == {"crash": "failed"} and every["reasons"] == {"crash": reason}
    assert ctl(capsys, running, "status", "crash") == (0, "failed\n", "")
    assert ctl(capsys, running, "status") == (0, f"crash: failed ({reason})\n", "")
    # procs: the state, the reason, nothing running.
    reply = running.call("procs", name="crash")
    assert reply["processes"] == []
    assert reply["watcher"]["state"] == "failed" and reply["watcher"]["reason"] == reason
    code, out, _ = ctl(capsys, running, "procs", "crash")
    assert code == 0 and out == f"crash: failed ({reason}), ready 0/1\nno processes\n"


def test_a_failed_watcher_starts_again_once_its_command_works(crash_loop):
    running, ok, events = crash_loop()
    running.call("start", name="crash")
    events.until("failed")
    ok.touch()
    reply = running.call("start", name="crash", waiting=True)
    [pid] = reply["info"]["started"]
    assert events.until("active")[-2:] == [("failed", "starting"), ("starting", "active")]
    assert running.call("status", name="crash")["status"] == "active"
    assert running.pids("crash") == [pid]
    assert running.call("procs", name="crash")["watcher"] == {
        "name": "crash", "state": "active", "reason": "", "numprocesses": 1, "ready": 1, "depends_on": [],
        "backoffs": 0, "max_backoffs": 2, "retry_at": None, "spawn_failures": 0}


def test_a_watcher_backing_off_shows_when_it_retries(crash_loop, capsys):
    running, _, events = crash_loop(retry_in=600, max_retry=5)
    before = time.time()
    running.call("start", name="crash")
    events.until("backoff")
    reason = "crash loop (2 exits within 3s), retry 1 of 5; retrying in 600s"
    assert running.call("status", name="crash")["status"] == "backoff"
    assert ctl(capsys, running, "status") == (0, f"crash: backoff ({reason})\n", "")
    watcher = running.call("procs", name="crash")["watcher"]
    assert (watcher["state"], watcher["reason"], watcher["backoffs"], watcher["max_backoffs"]) == \
        ("backoff", reason, 1, 5)
    assert before + 600 <= watcher["retry_at"] <= time.time() + 600
    code, out, _ = ctl(capsys, running, "procs", "crash")
    clock = time.strftime("%H:%M:%S", time.localtime(watcher["retry_at"]))
    assert code == 0 and out.startswith(f"crash: backoff ({reason}), ready 0/1, back-off 1 of 5, retry at {clock} (in ")
    # An operator's stop ends the back-off: nothing retries behind it.
    running.call("stop", name="crash", waiting=True)
    assert events.until("stopped")[-1] == ("backoff", "stopped")
    assert running.call("status", name="crash")["status"] == "stopped"
    assert "reasons" not in running.call("status")
