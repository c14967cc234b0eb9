"""signal and kill over a real control channel, with real process trees; and their gcircusctl side."""
from __future__ import annotations

import signal

import pytest

from gcircus import linux
from gcircus.control.commands import get_command
from gcircus.wire.errors import ArgumentError
from tests.support.control import error, ok
from tests.support.processes import IGNORE_TERM, alive, ignores_term
from tests.support.waiting import wait_for

TREE = "/bin/sh -c '/bin/sleep 1000 & /bin/sleep 1001 & wait'"


def children_of(pid: int, count: int) -> list[int]:
    return wait_for(lambda: len(kids := [k for k in linux.children(pid) if alive(k)]) == count and kids, 5,
                    message=f"{count} children of {pid}")


def exit_codes(rec, name: str) -> dict[int, int]:
    return {m["process_pid"]: m["exit_code"] for m in rec.of(f"watcher.{name}.reap")}


# -- signal ----------------------------------------------------------------------------------------------------------

def test_signal_reaches_every_process_which_is_reaped_and_replaced_without_kill_events(make_arbiter):
    # Two fresh processes dying at once would look like a crash loop to the flapping check.
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "numprocesses": 2,
                                         "check_flapping": False})
    watcher = arbiter.get_watcher("w")
    old = sorted(watcher.pids)
    reply = ok(client.call("signal", name="W", signum="usr1"))
    assert get_command("signal").console(reply) == "ok"
    wait_for(lambda: set(old) <= set(exit_codes(rec, "w")), 5, message="both reaped")
    assert all(exit_codes(rec, "w")[p] == -signal.SIGUSR1 for p in old)
    wait_for(lambda: len(watcher.get_active_pids()) == 2 and not set(old) & set(watcher.pids), 5,
             message="replacements")
    assert "watcher.w.kill" not in rec.topics("w")


def test_signal_one_pid_by_number(make_arbiter):
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "numprocesses": 2})
    target, other = sorted(arbiter.get_watcher("w").pids)
    ok(client.call("signal", name="w", pid=target, signum=int(signal.SIGUSR2)))
    wait_for(lambda: target in exit_codes(rec, "w"), 5, message="target reaped")
    assert exit_codes(rec, "w") == {target: -signal.SIGUSR2} and alive(other)


def test_signal_children_and_childpid_and_recursive(make_arbiter):
    arbiter, client, rec = make_arbiter({"name": "t", "cmd": TREE, "graceful_timeout": 1})
    watcher = arbiter.get_watcher("t")
    [shell] = watcher.pids
    first, second = children_of(shell, 2)
    ok(client.call("signal", name="t", pid=shell, childpid=first, signum="KILL"))
    wait_for(lambda: not alive(first), 5, message="that child killed")
    assert alive(second) and alive(shell)
    ok(client.call("signal", name="t", children=True, signum="TERM"))
    wait_for(lambda: not alive(second), 5, message="the other child killed")
    wait_for(lambda: shell in exit_codes(rec, "t"), 5, message="shell exits once its children are gone")
    [shell2] = wait_for(lambda: watcher.get_active_pids(), 5, message="shell replaced")
    kids = children_of(shell2, 2)
    ok(client.call("signal", name="t", recursive=True, signum="KILL"))
    wait_for(lambda: not alive(shell2) and not any(alive(k) for k in kids), 5, message="whole tree killed")


def test_signal_errors(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "w", "cmd": TREE})
    [pid] = arbiter.get_watcher("w").pids
    kids = children_of(pid, 2)
    assert error(client.call("signal", name="w", signum="NOPE"), 3) == "signal invalid"
    assert error(client.call("signal", name="w", signum=999), 3) == "signal invalid"
    assert "signum" in error(client.call("signal", name="w"), 3)
    assert error(client.call("signal", name="w", childpid=kids[0], signum="TERM"), 3) \
        == "cannot specify childpid without pid"
    assert error(client.call("signal", name="w", pid=1, signum="TERM"), 3) == "process 1 not found in 'w'"
    assert "not a child" in error(client.call("signal", name="w", pid=pid, childpid=1, signum="TERM"), 3)
    assert error(client.call("signal", name="x", signum="TERM"), 3) == "program x not found"
    assert alive(pid) and all(alive(k) for k in kids), "refused signals reached nobody"


def test_signal_command_line():
    sig = get_command("signal")
    assert sig.message(["w", "HUP"], {}) == {"name": "w", "signum": "HUP"}
    assert sig.message(["w", "12", "9"], {"children": True, "recursive": False}) == \
        {"name": "w", "pid": 12, "signum": "9", "children": True}
    assert sig.message(["w", "12", "13", "TERM"], {"recursive": True}) == \
        {"name": "w", "pid": 12, "childpid": 13, "signum": "TERM", "recursive": True}
    for bad in (["w"], ["w", "x", "TERM"], ["w", "1", "2", "3", "4"]):
        with pytest.raises(ArgumentError):
            sig.message(bad, {})


# -- kill ------------------------------------------------------------------------------------------------------------

def test_kill_one_pid_publishes_kill_and_reap_and_is_replaced(make_arbiter):
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "numprocesses": 2})
    watcher = arbiter.get_watcher("w")
    target, other = sorted(watcher.pids)
    reply = ok(client.call("kill", name="w", pid=target, signum="KILL", waiting=True))
    assert get_command("kill").console(reply) == "ok"
    assert not alive(target) and alive(other)
    assert exit_codes(rec, "w") == {target: -signal.SIGKILL}
    assert [m["process_pid"] for m in rec.of("watcher.w.kill")] == [target]
    wait_for(lambda: len(watcher.get_active_pids()) == 2, 5, message="replacement")
    assert watcher.status() == "active"


def test_kill_all_escalates_after_a_graceful_timeout_given_as_a_string(make_arbiter):
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": IGNORE_TERM, "numprocesses": 2})
    watcher = arbiter.get_watcher("w")
    old = sorted(watcher.pids)
    wait_for(lambda: all(ignores_term(p) for p in old), 5, message="children ignore SIGTERM")
    ok(client.call("kill", name="w", graceful_timeout="0.2", waiting=True))
    assert exit_codes(rec, "w") == {p: -signal.SIGKILL for p in old}, "SIGTERM ignored, SIGKILL after 0.2 s"
    assert len([m for m in rec.of("watcher.w.kill")]) == 4
    wait_for(lambda: len(watcher.get_active_pids()) == 2, 5, message="replacements")
    ok(client.call("kill", name="w", waiting=True, graceful_timeout=0))


def test_kill_errors(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000"})
    [pid] = arbiter.get_watcher("w").pids
    assert error(client.call("kill", name="w", pid=1), 3) == "process 1 not found in 'w'"
    assert error(client.call("kill", name="w", signum="NOPE"), 3) == "signal invalid"
    assert "graceful_timeout" in error(client.call("kill", name="w", graceful_timeout="soon"), 3)
    assert "graceful_timeout" in error(client.call("kill", name="w", graceful_timeout=-1), 3)
    assert error(client.call("kill", name="x"), 3) == "program x not found"
    assert alive(pid)


def test_kill_command_line():
    kill = get_command("kill")
    assert kill.message(["w"], {}) == {"name": "w"}
    assert kill.message(["w", "12"], {"signum": "KILL", "graceful_timeout": 1.5, "waiting": True}) == \
        {"name": "w", "pid": 12, "signum": "KILL", "graceful_timeout": 1.5, "waiting": True}
    with pytest.raises(ArgumentError):
        kill.message(["w", "x"], {})
