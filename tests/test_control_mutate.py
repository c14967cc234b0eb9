"""incr, decr, add, rm and set over a real control channel (a real Arbiter, a plain zmq DEALER, real processes).

Also the gcircusctl side of each command (`message()` from a command line, `console()` of a reply) and the
concurrency contract: a command on a busy watcher waits for it, reads and other watchers never wait.
"""
from __future__ import annotations

import getpass
import os
import resource
import signal

import gevent
import pytest

from gcircus.control.commands import get_command
from gcircus.wire.errors import ArgumentError
from tests.support import hookfuncs
from tests.support.control import error, ok
from tests.support.processes import IGNORE_TERM, alive, ignores_term
from tests.support.recorders import ArbiterRecorder, WatcherRecorder, entered
from tests.support.waiting import wait_for


def environ(pid: int) -> dict:
    # Read it once the command runs: while its launcher execs it (the parent-death fast path) /proc shows an empty one.
    wait_for(lambda: os.readlink(f"/proc/{pid}/exe").endswith("/sleep"), 5, message="command exec'd")
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = [i.decode() for i in f.read().split(b"\0") if i]
    return dict(i.split("=", 1) for i in items)


def nofile_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open files limit")


# -- incr / decr ---------------------------------------------------------------------------------------------------

def test_incr_and_decr_waiting_reply_the_new_count_and_change_processes(make_arbiter):
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "numprocesses": 2})
    watcher = arbiter.get_watcher("w")
    first = sorted(watcher.pids)
    reply = ok(client.call("incr", name="W", nb=3, waiting=True))
    assert reply["numprocesses"] == 5 and len(watcher.get_active_pids()) == 5
    assert get_command("incr").console(reply) == "5"
    reply = ok(client.call("decr", name="w", nb=2, waiting=True))
    assert reply["numprocesses"] == 3
    assert all(not alive(p) for p in first), "decr stops the oldest processes"
    assert len(watcher.get_active_pids()) == 3
    reaped = {m["process_pid"] for m in rec.of("watcher.w.reap")}
    assert set(first) <= reaped, "gcircus publishes reap for processes decr stopped"


def test_incr_decr_without_waiting_answer_plain_ok_then_apply(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000"})
    reply = ok(client.call("incr", name="w"))
    assert set(reply) == {"status", "time", "id"}
    assert get_command("incr").console(reply) == "ok"
    wait_for(lambda: len(arbiter.get_watcher("w").get_active_pids()) == 2, 5, message="incr applied")
    ok(client.call("decr", name="w", nb=10))
    wait_for(lambda: arbiter.get_watcher("w").numprocesses == 0, 5, message="decr floors at 0")


def test_incr_errors_are_message_errors(make_arbiter):
    _, client, _ = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000"})
    assert "nb" in error(client.call("incr", name="w", nb=-1), 3)
    assert "nb" in error(client.call("decr", name="w", nb="lots"), 3)
    assert "name" in error(client.call("incr"), 3)
    assert error(client.call("incr", name="nope"), 3) == "program nope not found"


def test_singleton_incr_is_refused_with_its_count(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "one", "cmd": "/bin/sleep 1000", "singleton": True})
    for command in ("incr", "decr"):
        reply = ok(client.call(command, name="one", waiting=True))
        assert reply["numprocesses"] == 1 and reply["singleton"] is True
    assert len(arbiter.get_watcher("one").pids) == 1


def test_incr_of_a_stopped_watcher_changes_only_the_count(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "autostart": False})
    assert ok(client.call("incr", name="w", nb=2, waiting=True))["numprocesses"] == 3
    watcher = arbiter.get_watcher("w")
    assert watcher.status() == "stopped" and watcher.pids == []


def test_incr_decr_command_line():
    incr = get_command("incr")
    assert incr.message(["w"], {}) == {"name": "w"}
    assert incr.message(["w", "3"], {"waiting": True}) == {"name": "w", "nb": 3, "waiting": True}
    with pytest.raises(ArgumentError):
        incr.message(["w", "x"], {})
    with pytest.raises(ArgumentError):
        get_command("decr").message([], {})


# -- add -------------------------------------------------------------------------------------------------------------

def test_add_registers_a_stopped_watcher_and_publishes_add(make_arbiter):
    arbiter, client, rec = make_arbiter()
    reply = ok(client.call("add", name="Extra", cmd="/bin/sleep", args=["1000"],
                           options={"numprocesses": "2", "rlimit_nofile": 321, "graceful_timeout": 1, "priority": 4,
                                    "flapping.attempts": 4, "hooks.after_spawn": "tests.support.hookfuncs.record"}))
    assert set(reply) == {"status", "time", "id"}
    assert ok(client.call("list"))["watchers"] == ["extra"]
    watcher = arbiter.get_watcher("extra")
    assert watcher.status() == "stopped" and watcher.numprocesses == 2 and watcher.priority == 4
    assert watcher.rlimits == {"nofile": 321} and watcher.respawn_policy.attempts == 4
    assert "after_spawn" in watcher.hooks
    assert rec.topics("extra") == ["watcher.extra.add"]
    reply = ok(client.call("start", name="extra", waiting=True))
    pid = reply["info"]["started"][0]
    assert nofile_limit(pid) == 321
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"/bin/sleep", b"1000"]
    assert get_command("add").console(reply) == "ok"


def test_add_with_start_and_waiting_replies_started_and_kept_at_top_level(make_arbiter):
    arbiter, client, rec = make_arbiter()
    reply = ok(client.call("add", name="w", cmd="/bin/sleep 1000", start=True, waiting=True,
                           options={"numprocesses": 2}))
    assert sorted(reply["started"]) == sorted(arbiter.get_watcher("w").pids) and reply["kept"] == []
    assert all(alive(p) for p in reply["started"])
    assert rec.topics("w")[0] == "watcher.w.add" and rec.topics("w")[-1] == "watcher.w.start"


def test_add_start_without_waiting_starts_in_the_background(make_arbiter):
    arbiter, client, _ = make_arbiter()
    reply = ok(client.call("add", name="w", cmd="/bin/sleep 1000", start=True))
    assert "started" not in reply
    wait_for(lambda: arbiter.get_watcher("w").status() == "active", 5, message="added watcher started")


def test_add_errors(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "Web", "cmd": "/bin/sleep 1000", "autostart": False})
    assert error(client.call("add", name="WEB", cmd="/bin/true"), 5) == "'WEB' already exist"  # circusd's words
    assert error(client.call("add", name="x", cmd="/bin/true", options={"colour": 1}), 3) == "unknown key 'colour'"
    reason = error(client.call("add", name="x", cmd="/bin/true", options={"numprocesses": "many"}), 3)
    assert "numprocesses" in reason and "'many'" in reason
    assert "singleton" in error(client.call("add", name="x", cmd="/bin/true",
                                            options={"singleton": True, "numprocesses": 2}), 3)
    assert "cmd" in error(client.call("add", name="x"), 3)
    assert "options" in error(client.call("add", name="x", cmd="/bin/true", options=[1]), 3)
    assert "user" in error(client.call("add", name="x", cmd="/bin/true", options={"uid": "no-such-user-x"}), 3)
    assert [w.name for w in arbiter.watchers] == ["Web"], "a refused add leaves nothing behind"


def test_add_with_endpoint_owner_requires_that_uid(make_arbiter):
    me = getpass.getuser()
    arbiter, client, _ = make_arbiter(endpoint_owner=me)
    assert error(client.call("add", name="a", cmd="/bin/true"), 3) == "uid does not match endpoint_owner"
    assert error(client.call("add", name="a", cmd="/bin/true", options={"uid": "nobody"}), 3) \
        == "uid does not match endpoint_owner"
    ok(client.call("add", name="a", cmd="/bin/true", options={"uid": me}))
    ok(client.call("add", name="b", cmd="/bin/true", options={"uid": os.getuid()}))
    assert arbiter.numwatchers() == 2


def test_add_command_line_joins_the_command():
    add = get_command("add")
    assert add.message(["w", "/bin/sleep", "10"], {"start": True}) == \
        {"name": "w", "cmd": "/bin/sleep 10", "start": True}
    assert add.message(["w", "x"], {"start": False, "waiting": True}) == {"name": "w", "cmd": "x", "waiting": True}
    with pytest.raises(ArgumentError):
        add.message(["w"], {})


# -- rm --------------------------------------------------------------------------------------------------------------

def test_rm_publishes_remove_and_stops_the_processes(make_arbiter):
    arbiter, client, rec = make_arbiter({"name": "Gone", "cmd": "/bin/sleep 1000", "numprocesses": 2},
                                        {"name": "stay", "cmd": "/bin/sleep 1000"})
    pids = arbiter.get_watcher("gone").pids
    reply = ok(client.call("rm", name="GONE", waiting=True))
    assert get_command("rm").console(reply) == "ok"
    assert not any(alive(p) for p in pids)
    assert ok(client.call("list"))["watchers"] == ["stay"]
    topics = rec.topics("gone")
    assert topics.index("watcher.gone.remove") < topics.index("watcher.gone.stop")
    assert error(client.call("rm", name="gone"), 3) == "program gone not found"


def test_rm_nostop_leaves_the_processes_running_unsupervised(make_arbiter):
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "numprocesses": 2})
    watcher = arbiter.get_watcher("w")
    pids = watcher.pids
    ok(client.call("rm", name="w", nostop=True, waiting=True))
    try:
        assert all(alive(p) for p in pids) and arbiter.numwatchers() == 0
        assert watcher.status() == "stopped" and watcher.pids == []
        watcher_events = WatcherRecorder(watcher)
        os.kill(pids[0], 9)
        wait_for(lambda: not alive(pids[0]), 5, message="orphan killed")
        # The watcher has handled that exit (a respawn would follow it), and nothing it does is still under way.
        wait_for(lambda: pids[0] in [m["process_pid"] for m in watcher_events.of("reap")], 5, message="exit handled")
        watcher.settle()
        topics = rec.topics("w")
        assert watcher.pids == [] and "watcher.w.spawn" not in topics[topics.index("watcher.w.remove"):]
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, 9)
    wait_for(lambda: not any(alive(p) for p in pids), 5, message="orphans gone")


def test_rm_command_line_passes_nostop_and_waiting():
    rm = get_command("rm")
    assert rm.message(["w"], {"nostop": True, "waiting": True}) == {"name": "w", "nostop": True, "waiting": True}
    with pytest.raises(ArgumentError):
        rm.message([], {})


# -- set -------------------------------------------------------------------------------------------------------------

def test_set_numprocesses_manages_processes_and_publishes_updated(make_arbiter):
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000"})
    pid = arbiter.get_watcher("w").pids[0]
    reply = ok(client.call("set", name="w", options={"numprocesses": 3, "warmup_delay": 0}, waiting=True))
    assert get_command("set").console(reply) == "ok"
    assert len(arbiter.get_watcher("w").get_active_pids()) == 3 and alive(pid), "no reload for numprocesses"
    assert rec.topics("w").count("watcher.w.updated") == 2


def test_set_env_replaces_it_and_reloads_into_new_processes(make_arbiter):
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "env": {"OLD": "1"}})
    old = arbiter.get_watcher("w").pids[0]
    ok(client.call("set", name="w", options={"env": {"NEW": "2"}}, waiting=True))
    [new] = arbiter.get_watcher("w").pids
    assert new != old and not alive(old)
    # Read once the exec has put the new environment in place (mid-exec, /proc shows it empty).
    assert wait_for(lambda: environ(new), message="the new child's environment") == {"NEW": "2"}
    assert "watcher.w.updated" in rec.topics("w") and rec.topics("w")[-1] == "watcher.w.reload"
    ok(client.call("set", name="w", options={"copy_env": True}, waiting=True))
    ok(client.call("kill", name="w", waiting=True))
    [newest] = wait_for(lambda: arbiter.get_watcher("w").get_active_pids(), 5)
    env = wait_for(lambda: environ(newest), message="the newest child's environment")
    assert env["NEW"] == "2" and env["PATH"] == os.environ["PATH"], "copy_env applies from the next spawn"


def test_set_validates_every_key_before_applying_any(make_arbiter):
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000"})
    watcher = arbiter.get_watcher("w")
    reason = error(client.call("set", name="w", options={"numprocesses": 4, "bogus": 1}, waiting=True), 3)
    assert reason == "unknown key 'bogus'"
    assert error(client.call("set", name="w", options={"priority": 3}), 3) == "unknown key 'priority'"
    assert error(client.call("set", name="w", options={"hooks.nope": "a.b"}), 3) == "unknown key 'hooks.nope'"
    assert error(client.call("set", name="w", options={"rlimit_nope": 1}), 3) == "unknown key 'rlimit_nope'"
    reason = error(client.call("set", name="w", options={"numprocesses": 4, "max_age": "old"}, waiting=True), 3)
    assert "max_age" in reason and "'old'" in reason
    reason = error(client.call("set", name="w", options={"numprocesses": 4, "hooks.after_spawn": "no.such.hook"}), 3)
    assert "after_spawn" in reason
    assert "working_dir" in error(client.call("set", name="w", options={"working_dir": "/no/such/dir"}), 3)
    assert "user" in error(client.call("set", name="w", options={"uid": "no-such-user-x"}), 3)
    assert "negative" in error(client.call("set", name="w", options={"numprocesses": -1}), 3)
    assert "env" in error(client.call("set", name="w", options={"env": ["A=1"]}), 3)
    assert "class" in error(client.call("set", name="w", options={"stdout_stream": {"filename": "x"}}), 3)
    assert "options" in error(client.call("set", name="w"), 3)
    assert error(client.call("set", name="nope", options={}), 3) == "program nope not found"
    assert watcher.numprocesses == 1 and "watcher.w.updated" not in rec.topics("w")


def test_set_singleton_above_one_is_refused(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "one", "cmd": "/bin/sleep 1000", "singleton": True},
                                      {"name": "many", "cmd": "/bin/sleep 1000", "numprocesses": 2})
    assert "singleton" in error(client.call("set", name="one", options={"numprocesses": 2}), 3)
    assert "singleton" in error(client.call("set", name="many", options={"singleton": True}), 3)
    ok(client.call("set", name="many", options={"singleton": True, "numprocesses": 1}, waiting=True))
    assert arbiter.get_watcher("many").singleton and len(arbiter.get_watcher("many").get_active_pids()) == 1


def test_set_keys_circus_ignores_take_effect(make_arbiter, tmp_path):
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "numprocesses": 2})
    watcher = arbiter.get_watcher("w")
    ok(client.call("set", name="w", waiting=True, options={
        "respawn": False, "max_retry": 2, "rlimit_nofile": 200, "close_child_stdout": True, "retry_in": 3.5,
        "flapping.attempts": 7, "graceful_timeout": 2, "stop_signal": 2}))
    assert rec.topics("w").count("watcher.w.updated") == 8
    assert (watcher.max_retry, watcher.rlimits, watcher.close_child_stdout) == (2, {"nofile": 200}, True)
    assert (watcher.respawn_policy.retry_in, watcher.respawn_policy.attempts) == (3.5, 7)
    assert dict(watcher.options())["flapping.attempts"] == 7
    assert (watcher.graceful_timeout, watcher.stop_signal) == (2.0, 2)
    old = sorted(watcher.pids)
    assert all(nofile_limit(p) != 200 for p in old), "running processes are not restarted"
    ok(client.call("set", name="w", options={"respawn": True}, waiting=True))
    ok(client.call("kill", name="w", pid=old[0], waiting=True))
    new = wait_for(lambda: [p for p in watcher.get_active_pids() if p not in old], 5, message="replacement")
    assert nofile_limit(new[0]) == 200
    assert os.readlink(f"/proc/{new[0]}/fd/1") == "/dev/null"
    ok(client.call("set", name="w", options={"respawn": False}, waiting=True))
    os.kill(old[1], 9)
    wait_for(lambda: old[1] not in watcher.processes, 5, message="reaped")
    watcher.settle()  # the exit is handled: a respawn would be under way or done by now
    assert watcher.get_active_pids() == new, "respawn = false is honoured"


def test_set_hooks_and_streams(make_arbiter, tmp_path):
    arbiter, client, _ = make_arbiter({"name": "w", "cmd": "/bin/sh -c 'echo hi; exec sleep 1000'",
                                       "stdout_stream": {"class": "FileStream", "filename": str(tmp_path / "a")}})
    watcher = arbiter.get_watcher("w")
    hookfuncs.CALLS.clear()
    ok(client.call("set", name="w", options={"hooks": {"after_spawn": "tests.support.hookfuncs.record"},
                                             "stdout_stream.filename": str(tmp_path / "b")}, waiting=True))
    assert watcher.stdout_stream == {"class": "FileStream", "filename": str(tmp_path / "b")}
    assert watcher.hooks_config == {"after_spawn": ("tests.support.hookfuncs.record", False)}
    ok(client.call("kill", name="w", waiting=True))
    wait_for(lambda: os.path.exists(tmp_path / "b") and (tmp_path / "b").read_text() == "hi\n", 5,
             message="output in the new file")
    wait_for(lambda: [c for c in hookfuncs.CALLS if c[0] == "after_spawn"], 5, message="new hook called")
    ok(client.call("set", name="w", options={"hooks.after_spawn": ""}, waiting=True))
    assert "after_spawn" not in watcher.hooks and watcher.hooks_config == {}


def test_set_on_a_stopped_watcher_starts_nothing(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "autostart": False})
    ok(client.call("set", name="w", options={"cmd": "/bin/sleep 999", "numprocesses": 2}, waiting=True))
    watcher = arbiter.get_watcher("w")
    assert watcher.status() == "stopped" and watcher.pids == [] and watcher.cmd == "/bin/sleep 999"


def test_set_uid_with_endpoint_owner_must_be_the_owner(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "autostart": False},
                                      endpoint_owner=getpass.getuser())
    assert error(client.call("set", name="w", options={"uid": "nobody"}), 3) == "uid does not match endpoint_owner"
    ok(client.call("set", name="w", options={"uid": getpass.getuser()}, waiting=True))


def test_set_command_line_converts_values_with_the_option_table():
    set_ = get_command("set")
    props = set_.message(["w", "numprocesses", "3", "respawn", "off", "stop_signal", "KILL", "graceful_timeout",
                          "2.5", "env", "A=1,B=x=y", "hooks", "before_start:a.b,after_start:c.d",
                          "hooks.after_spawn", "m.f, true", "rlimit_nofile", "100", "cmd", "x y"],
                         {"waiting": True})
    assert props == {"name": "w", "waiting": True, "options": {
        "numprocesses": 3, "respawn": False, "stop_signal": 9, "graceful_timeout": 2.5, "env": {"A": "1", "B": "x=y"},
        "hooks": {"before_start": "a.b", "after_start": "c.d"}, "hooks.after_spawn": "m.f,true",
        "rlimit_nofile": 100, "cmd": "x y"}}
    assert set_.message(["w", "rlimit_nofile", ""], {})["options"] == {"rlimit_nofile": resource.RLIM_INFINITY}
    for bad in (["w"], ["w", "numprocesses"], ["w", "numprocesses", "x"], ["w", "colour", "red"],
                ["w", "hooks", "nohook:a.b"], ["w", "env", "novalue"], ["w", "stop_signal", "FOO"]):
        with pytest.raises(ArgumentError):
            set_.message(bad, {})


# -- concurrency -----------------------------------------------------------------------------------------------------

def test_busy_watcher_makes_its_commands_wait_while_reads_and_other_watchers_do_not(make_arbiter):
    # The stop stays busy (a child ignoring SIGTERM, a long graceful period) until the test kills the child itself:
    # what happens meanwhile is checked against that state, never against a guess of how long it lasts.
    arbiter, client, _ = make_arbiter({"name": "a", "cmd": IGNORE_TERM, "graceful_timeout": 120},
                                      {"name": "b", "cmd": "/bin/sleep 1000"})
    a = arbiter.get_watcher("a")
    wait_for(lambda: a.pids and all(ignores_term(p) for p in a.pids), 30, message="child ignores SIGTERM")
    child = a.pids[0]
    stop_client, incr_client = arbiter.new_client(), arbiter.new_client()
    stopping = gevent.spawn(stop_client.call, "stop", name="a", waiting=True)
    wait_for(lambda: a.status() == "stopping", 30, message="stop in progress")

    assert client.call("status", name="a")["status"] == "stopping"  # Circus's status replaces "ok"
    assert ok(client.call("list"))["watchers"] == ["a", "b"]
    assert ok(client.call("incr", name="b", waiting=True))["numprocesses"] == 2
    assert len(arbiter.get_watcher("b").get_active_pids()) == 2
    assert not stopping.ready(), "reads and watcher b did not wait"

    incr_reached = entered(a, "incr")
    incr_a = gevent.spawn(incr_client.call, "incr", name="a", waiting=True)
    wait_for(incr_reached.is_set, 30, message="the incr reaching the busy watcher")  # a reply now would be the bug
    assert not incr_a.ready() and not stopping.ready(), "incr on the busy watcher waits for its lock"
    os.kill(child, signal.SIGKILL)  # ends the stop
    ok(stopping.get(timeout=30))
    assert ok(incr_a.get(timeout=30))["numprocesses"] == 2
    assert a.status() == "stopped" and a.numprocesses == 2 and a.pids == []


def test_set_waits_for_a_busy_watcher_and_applies_after(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "a", "cmd": IGNORE_TERM, "graceful_timeout": 120})
    a = arbiter.get_watcher("a")
    wait_for(lambda: a.pids and all(ignores_term(p) for p in a.pids), 30, message="child ignores SIGTERM")
    child = a.pids[0]
    stopping = gevent.spawn(arbiter.new_client().call, "stop", name="a", waiting=True)
    wait_for(lambda: a.status() == "stopping", 30, message="stop in progress")
    set_reached = entered(a, "apply_options")
    setting = gevent.spawn(client.call, "set", name="a", options={"numprocesses": 3}, waiting=True)
    wait_for(set_reached.is_set, 30, message="the set reaching the busy watcher")  # applying it now: the bug
    assert not setting.ready() and a.numprocesses == 1
    os.kill(child, signal.SIGKILL)  # ends the stop
    ok(stopping.get(timeout=30))
    ok(setting.get(timeout=30))
    assert a.numprocesses == 3 and a.status() == "stopped"


# -- Circus's own client -----------------------------------------------------------------------------------------------

def test_requests_built_by_circus_command_classes_are_served(make_arbiter, tmp_path):
    """circusctl builds these messages (string pids and timeouts included); gcircusd must serve each one."""
    circus_commands = pytest.importorskip("circus.commands").get_commands()
    arbiter, client, rec = make_arbiter({"name": "w", "cmd": "/bin/sleep 1000", "check_flapping": False})

    def send(name: str, *args, **opts) -> dict:
        message = circus_commands[name].message(*args, **opts)
        return ok(client.call(message["command"], waiting=True, **message["properties"]))

    send("add", "extra", "/bin/sleep", "1000", start=True)
    assert arbiter.get_watcher("extra").status() == "active"
    assert send("incr", "w", "2")["numprocesses"] == 3
    assert send("decr", "w")["numprocesses"] == 2
    send("set", "w", "numprocesses", "1", "stop_signal", "INT", "respawn", "true",
         "stdout_stream.filename", str(tmp_path / "out"), "hooks", "after_spawn:tests.support.hookfuncs.record")
    watcher = arbiter.get_watcher("w")
    assert (watcher.numprocesses, watcher.stop_signal, watcher.stdout_stream) == (1, 2, {"filename":
                                                                                          str(tmp_path / "out")})
    [pid] = wait_for(lambda: len(watcher.get_active_pids()) == 1 and watcher.get_active_pids(), 5)
    send("kill", "w", str(pid), signum="KILL", graceful_timeout="1")
    assert exit_codes_of(rec, "w")[pid] == -9
    [pid] = wait_for(lambda: watcher.get_active_pids(), 5, message="replacement")
    send("signal", "w", str(pid), "USR1")
    wait_for(lambda: exit_codes_of(rec, "w").get(pid) == -10, 5, message="signalled process reaped")
    send("rm", "extra")
    assert arbiter.numwatchers() == 1


def exit_codes_of(rec: ArbiterRecorder, name: str) -> dict[int, int]:
    return {m["process_pid"]: m["exit_code"] for m in rec.of(f"watcher.{name}.reap")}
