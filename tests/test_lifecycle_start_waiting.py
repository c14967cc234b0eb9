"""`start --waiting` and `restart --waiting` answer once the watcher settled: an error naming the watcher and the cause
when it ends failed, with a real gcircusd whose command cannot be spawned."""
from __future__ import annotations

import pytest

from gcircus.cli.gcircusctl import main as gcircusctl
from tests.support.waiting import wait_for

UNSPAWNABLE = """
    [watcher:{name}]
    cmd = /nonexistent/x
    max_retry = {max_retry}
    autostart = {autostart}
"""
FINE = """
    [watcher:fine]
    cmd = sleep 1000
    graceful_timeout = 2
    autostart = {autostart}
"""
CANNOT_SPAWN = "watcher 'bad' failed: cannot spawn: command not found: '/nonexistent/x' (2 spawn attempts failed)"


def unspawnable(name: str = "bad", max_retry: int = 2, autostart: bool = False) -> str:
    return UNSPAWNABLE.format(name=name, max_retry=max_retry, autostart=str(autostart).lower())


def failed_reply(reply: dict) -> str:
    assert reply["status"] == "error" and reply["errno"] == 5 and reply["tb"] is None, reply
    return reply["reason"]


@pytest.mark.parametrize("command", ["start", "restart"])
def test_waiting_for_a_watcher_that_cannot_spawn_is_an_error_naming_it(gcircusd, command):
    running = gcircusd(unspawnable() + FINE.format(autostart="true"))
    assert failed_reply(running.client.call(command, name="bad", waiting=True)) == CANNOT_SPAWN
    assert running.call("status", name="bad")["status"] == "failed"
    assert running.call("status", name="fine")["status"] == "active"


def test_without_waiting_the_reply_is_immediate_and_the_watcher_fails_behind_it(gcircusd):
    running = gcircusd(unspawnable())
    assert running.call("start", name="bad")["status"] == "ok"
    wait_for(lambda: running.call("status", name="bad")["status"] == "failed", 30, message="bad failed")


def test_gcircusctl_start_waiting_exits_3_with_the_reason(gcircusd, capsys):
    running = gcircusd(unspawnable())
    code = gcircusctl(["--endpoint", running.endpoint, "start", "--waiting", "bad"])
    out, err = capsys.readouterr()
    assert (code, out, err) == (3, "", f"error: {CANNOT_SPAWN}\n")


def test_a_start_waiting_that_succeeds_still_lists_the_processes(gcircusd):
    running = gcircusd(unspawnable() + FINE.format(autostart="false"))
    info = running.call("start", name="fine", waiting=True)["info"]
    assert info["started"] == running.pids("fine") and info["kept"] == []


def test_waiting_for_several_watchers_names_each_that_failed(gcircusd):
    running = gcircusd(unspawnable("bad1", autostart=True) + unspawnable("bad2", autostart=True)
                       + FINE.format(autostart="true"))
    for name in ("bad1", "bad2"):
        wait_for(lambda name=name: running.call("status", name=name)["status"] == "failed", 30,
                 message=f"{name} failed at start-up")
    for props in ({}, {"name": "bad*"}):  # every autostart watcher, and a pattern
        reason = failed_reply(running.client.call("start", waiting=True, **props))
        assert reason.startswith("2 watchers did not start: watcher 'bad"), reason
        assert all(f"watcher '{name}' failed: cannot spawn" in reason for name in ("bad1", "bad2")), reason
    assert running.call("status", name="fine")["status"] == "active"


def test_waiting_for_a_watcher_that_retries_forever_says_so_instead_of_waiting_forever(gcircusd):
    running = gcircusd(unspawnable(max_retry=-1))
    reason = failed_reply(running.client.call("start", name="bad", waiting=True))
    assert reason.startswith("watcher 'bad' is backing off and retries forever: cannot spawn"), reason
    assert running.call("status", name="bad")["status"] == "backoff"
    running.call("stop", name="bad", waiting=True)
    assert running.call("status", name="bad")["status"] == "stopped"


DEPENDENT = """
    [watcher:db]
    cmd = {db_cmd}
    max_retry = 1
    autostart = false
    graceful_timeout = 2

    [watcher:web]
    cmd = sleep 1000
    depends_on = db
    autostart = {autostart}
    graceful_timeout = 2
"""


@pytest.mark.parametrize("db_cmd, db_state", [("sleep 1000", "stopped"), ("/nonexistent/x", "failed")])
def test_waiting_for_a_watcher_whose_dependency_will_not_start_is_an_error_naming_both(gcircusd, db_cmd, db_state):
    running = gcircusd(DEPENDENT.format(db_cmd=db_cmd, autostart="false"))
    if db_state == "failed":
        failed_reply(running.client.call("start", name="db", waiting=True))
    reply = running.client.call("start", name="web", waiting=True)
    # Refused before anything starts: a plain start of a watcher whose dependency is down names it.
    assert reply["status"] == "error" and "cannot start web: it depends on db" in reply["reason"], reply
    assert f"db is {db_state}" in reply["reason"], reply
    assert running.call("status", name="db")["status"] == db_state
    assert running.pids("web") == []


def test_waiting_for_every_watcher_names_one_waiting_for_a_stopped_dependency(gcircusd):
    running = gcircusd(DEPENDENT.format(db_cmd="sleep 1000", autostart="true"))
    reply = running.client.call("start", waiting=True)
    assert reply["status"] == "error" and "watcher 'web' is waiting for 'db' (stopped)" in reply["reason"], reply
