"""The read-only commands over a real control socket (PROTOCOL.md 2.5, 2.7): stats, dstats, options, get,
globaloptions, numprocesses, numwatchers, listen, ipython; and gcircus.procinfo, which reads process information.

Most tests run an embedded Arbiter bound on free loopback ports (hooks can then be plain functions) and talk to it
as Circus's client does: a DEALER sending one JSON frame. One test drives a real gcircusd started from an ini file.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import signal
import textwrap
import time
import uuid

import gevent
import psutil
import pytest
import zmq.green as zmq

from gcircus import get_arbiter, procinfo
from gcircus.control.commands import get_command
from gcircus.events import message, topic
from gcircus.process import Process
from gcircus.wire.errors import MESSAGE_ERROR, ArgumentError
from tests.support.ports import free_port
from tests.support.processes import PYTHON, running_own_program
from tests.support.waiting import wait_for

SIZE = re.compile(r"^(\d+B|\d+\.\d\d[KMGTPEZY])$")
CTIME = re.compile(r"^\d+:\d\d\.\d\d$")
INFO_FIELDS = ["mem_info1", "mem_info2", "cpu", "mem", "ctime", "pid", "username", "nice", "create_time", "age",
               "cmdline", "children", "started", "wid"]
CHILD_FIELDS = INFO_FIELDS[:-2]
ME = pwd.getpwuid(os.getuid()).pw_name


class Control:
    """A DEALER on the control endpoint, as circus.client.CircusClient uses it: one JSON frame, replies by id."""

    def __init__(self, endpoint: str):
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.connect(endpoint)

    def call(self, command: str, timeout: float = 5.0, **properties) -> dict:
        msg_id = uuid.uuid4().hex
        self.socket.send(json.dumps({"id": msg_id, "command": command, "properties": properties}).encode())
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(int(left * 1000)):
                raise AssertionError(f"no reply to {command!r} within {timeout}s")
            reply = json.loads(self.socket.recv())
            if reply.get("id") == msg_id:
                return reply

    def ok(self, command: str, **properties) -> dict:
        reply = self.call(command, **properties)
        assert reply["status"] == "ok", reply
        return reply

    def error(self, command: str, **properties) -> dict:
        reply = self.call(command, **properties)
        assert reply["status"] == "error", reply
        return reply

    def close(self) -> None:
        self.socket.close(linger=0)


# -- hooks ---------------------------------------------------------------------------------------------------------

HOOK_CALLS: list = []


def add_fields(watcher, arbiter, hook_name, pid, stats):
    HOOK_CALLS.append((watcher.name, hook_name, pid, dict(stats)))
    stats["requests"] = 42
    stats["tags"] = ("a", "b")  # not JSON: must come out as a list
    return True


def explode_halfway(watcher, arbiter, hook_name, pid, stats):
    HOOK_CALLS.append((watcher.name, hook_name, pid, dict(stats)))
    stats["partial"] = True
    raise RuntimeError("stats backend down")


# -- fixtures ------------------------------------------------------------------------------------------------------

SHELL_TREE = "/bin/sh -c 'sleep 1000 & sleep 1000 & wait'"


@pytest.fixture
def running():
    """An arbiter with watchers `Sleepy` (2 sleeps), `tree` (a shell with two children), `hooked` and `broken`
    (extended_stats hooks that work / raise) and `idle` (never started); yields (arbiter, control client)."""
    HOOK_CALLS.clear()
    watchers = [
        {"name": "Sleepy", "cmd": "/bin/sleep 1000", "numprocesses": 2, "graceful_timeout": 2,
         "env": {"B": "2", "A": "1"}, "stop_signal": signal.SIGINT, "rlimits": {"nofile": 1024},
         "options": {"custom_key": "custom value", "flapping.attempts": "4"}},
        {"name": "tree", "cmd": SHELL_TREE, "graceful_timeout": 2},
        {"name": "hooked", "cmd": "/bin/sleep 1000", "graceful_timeout": 2,
         "hooks": {"extended_stats": (add_fields, False)}},
        {"name": "broken", "cmd": "/bin/sleep 1000", "graceful_timeout": 2,
         "hooks": {"extended_stats": (explode_halfway, False)}},
        {"name": "idle", "cmd": "/bin/sleep 1000", "autostart": False},
    ]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    arbiter = get_arbiter(watchers, controller=endpoint, pubsub_endpoint=f"tcp://127.0.0.1:{free_port()}",
                          check_delay=2.5)
    arbiter.start(background=True)
    control = Control(endpoint)
    try:
        tree = arbiter.get_watcher("tree")
        # Both children have exec'd sleep: between fork and exec a child still shows the shell's cmdline.
        wait_for(lambda: len(kids := next(iter(tree.processes.values())).children()) == 2
                 and all(running_own_program(pid) for pid in kids), timeout=30, message="the shell's children")
        yield arbiter, control
    finally:
        control.close()
        arbiter.stop()
        HOOK_CALLS.clear()


def _check_info(info: dict, process=None) -> None:
    """Every field of a watcher process's info, with Circus's formats."""
    assert list(info) == INFO_FIELDS
    assert SIZE.match(info["mem_info1"]) and SIZE.match(info["mem_info2"]), info
    assert isinstance(info["cpu"], float) and isinstance(info["mem"], float)
    assert info["mem"] == round(info["mem"], 3)
    assert CTIME.match(info["ctime"]), info
    assert info["username"] == ME
    assert info["nice"] == os.getpriority(os.PRIO_PROCESS, info["pid"])
    assert abs(info["create_time"] - psutil.Process(info["pid"]).create_time()) < 0.01
    if process is not None:
        assert info["pid"] == process.pid
        assert info["started"] == pytest.approx(process.started)
        assert info["wid"] == process.wid
        assert 0 <= info["age"] <= time.time() - process.started + 1


# -- stats ---------------------------------------------------------------------------------------------------------

def test_stats_of_every_watcher_maps_configured_names_to_pid_strings(running):
    arbiter, control = running
    reply = control.ok("stats")
    assert list(reply) == ["status", "time", "infos", "id"]
    assert set(reply["infos"]) == {"Sleepy", "tree", "hooked", "broken", "idle"}  # names as configured
    sleepy = arbiter.get_watcher("sleepy")
    assert list(reply["infos"]["Sleepy"]) == [str(pid) for pid in sleepy.processes]  # JSON keys, spawn order
    for pid, info in reply["infos"]["Sleepy"].items():
        _check_info(info, sleepy.processes[int(pid)])
        assert info["cmdline"] == "sleep" and info["children"] == []
    assert reply["infos"]["idle"] == {}
    assert "requests" not in next(iter(reply["infos"]["hooked"].values()))  # hooks run only when extended


def test_stats_of_one_watcher_echoes_the_name_as_sent(running):
    arbiter, control = running
    reply = control.ok("stats", name="SLEEPY")
    assert list(reply) == ["status", "time", "name", "info", "id"]
    assert reply["name"] == "SLEEPY"
    assert [int(pid) for pid in reply["info"]] == arbiter.get_watcher("sleepy").get_active_pids()


def test_stats_of_one_process_echoes_the_pid_as_sent(running):
    arbiter, control = running
    process = next(iter(arbiter.get_watcher("sleepy").processes.values()))
    reply = control.ok("stats", name="Sleepy", process=process.pid)
    assert list(reply) == ["status", "time", "process", "info", "id"]
    assert reply["process"] == process.pid
    _check_info(reply["info"], process)
    assert reply["info"]["wid"] in (1, 2)
    as_text = control.ok("stats", name="sleepy", process=str(process.pid))
    assert as_text["process"] == str(process.pid) and as_text["info"]["pid"] == process.pid


def test_stats_lists_the_direct_children_of_a_process(running):
    arbiter, control = running
    shell = next(iter(arbiter.get_watcher("tree").processes.values()))
    info = control.ok("stats", name="tree", process=shell.pid)["info"]
    assert info["cmdline"] == "sh"
    children = info["children"]
    assert sorted(c["pid"] for c in children) == sorted(shell.children())
    for child in children:
        assert list(child) == CHILD_FIELDS  # no started/wid: gcircus did not spawn them
        assert child["cmdline"] == "sleep" and child["children"] == []
        assert SIZE.match(child["mem_info1"]) and CTIME.match(child["ctime"])
        assert child["username"] == ME and child["age"] >= 0


def test_stats_errors(running):
    arbiter, control = running
    reply = control.error("stats", name="sleepy", process=1)
    assert (reply["errno"], reply["reason"]) == (MESSAGE_ERROR, "process 1 not found in 'sleepy'")
    reply = control.error("stats", name="sleepy", process="1")
    assert reply["reason"] == "process '1' not found in 'sleepy'"
    reply = control.error("stats", name="nope")
    assert (reply["errno"], reply["reason"]) == (MESSAGE_ERROR, "program nope not found")
    reply = control.error("stats", name="sleepy", process="abc")
    assert (reply["errno"], reply["reason"]) == (MESSAGE_ERROR, "'process' must be an integer")


def test_stats_extended_adds_the_hook_fields(running):
    arbiter, control = running
    process = next(iter(arbiter.get_watcher("hooked").processes.values()))
    info = control.ok("stats", name="hooked", process=process.pid, extended=True)["info"]
    assert info["requests"] == 42 and info["tags"] == ["a", "b"]
    name, hook_name, pid, seen = HOOK_CALLS[-1]
    assert (name, hook_name, pid) == ("hooked", "extended_stats", process.pid)
    assert seen["pid"] == process.pid and "mem_info1" in seen
    infos = control.ok("stats", name="hooked", extended=True)["info"]
    assert infos[str(process.pid)]["requests"] == 42
    everything = control.ok("stats", extended=True)["infos"]
    assert everything["hooked"][str(process.pid)]["requests"] == 42
    assert "requests" not in next(iter(everything["Sleepy"].values()))  # no hook there


def test_stats_extended_with_a_failing_hook_returns_the_plain_stats(running):
    arbiter, control = running
    events: list = []
    arbiter.subscribe(lambda event: events.append((topic(event), message(event))))
    process = next(iter(arbiter.get_watcher("broken").processes.values()))
    reply = control.ok("stats", name="broken", process=process.pid, extended=True)
    assert HOOK_CALLS and HOOK_CALLS[-1][1] == "extended_stats"  # it did run
    assert list(reply["info"]) == INFO_FIELDS  # nothing it added before raising
    assert ("watcher.broken.hook_failure", "stats backend down") in [(t, m.get("error")) for t, m in events]
    assert control.ok("stats", name="broken", extended=True)["info"][str(process.pid)]["pid"] == process.pid


def test_stats_of_a_process_that_vanished(running):
    arbiter, control = running
    idle = arbiter.get_watcher("idle")
    dead = Process("idle", 1, "/bin/sleep 1000")
    dead.send_signal(signal.SIGKILL)
    dead.wait(5)
    assert procinfo.process_info(dead) == procinfo.NO_SUCH_PROCESS
    idle.processes[dead.pid] = dead  # the moment between a death and its handling by the watcher
    try:
        reply = control.ok("stats", name="idle", process=dead.pid)
        assert reply["info"] == "No such process (stopped?)"
        assert get_command("stats").console(reply) == f"{dead.pid}: No such process (stopped?)\n"
        all_infos = control.ok("stats", extended=True)["infos"]
        assert all_infos["idle"] == {str(dead.pid): "No such process (stopped?)"}
        assert get_command("stats").console({"infos": all_infos}).count("No such process (stopped?)") == 1
    finally:
        idle.processes.pop(dead.pid, None)


ZOMBIE_PARENT = (f"{PYTHON} -c 'import os, time\nif os.fork() == 0:\n    os._exit(0)\ntime.sleep(1000)'")


def test_a_zombie_child_is_listed_as_zombie():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    arbiter = get_arbiter([{"name": "z", "cmd": ZOMBIE_PARENT, "graceful_timeout": 2}], controller=endpoint)
    arbiter.start(background=True)
    control = Control(endpoint)
    try:
        parent = next(iter(arbiter.get_watcher("z").processes.values()))
        wait_for(lambda: [c for c in parent.children() if psutil.Process(c).status() == psutil.STATUS_ZOMBIE],
                 message="the never-reaped child")
        info = control.ok("stats", name="z", process=parent.pid)["info"]
        _check_info(info, parent)
        [child] = info["children"]
        assert (child["nice"], child["cmdline"]) == ("Zombie", "N/A")
        assert child["mem_info1"] == "0B" and CTIME.match(child["ctime"])
    finally:
        control.close()
        arbiter.stop()


def test_a_child_that_vanished_is_left_out():
    assert procinfo.children_info([_gone_pid()]) == []


def _gone_pid() -> int:
    process = Process("gone", 1, "/bin/true")
    process.wait(5)
    return process.pid


def test_stats_console_rendering(running):
    arbiter, control = running
    command = get_command("stats")
    shell = next(iter(arbiter.get_watcher("tree").processes.values()))
    one = control.ok("stats", name="tree", process=shell.pid)
    text = command.console(one)
    lines = text.split("\n")
    info = one["info"]
    assert lines[0] == (f"{shell.pid}: {shell.pid}  sh {ME} {info['nice']} {info['mem_info1']} {info['mem_info2']} "
                        f"{info['cpu']} {info['mem']} {info['ctime']}")
    assert len(lines) == 4 and lines[-1] == ""  # two children, then the blank line circusctl prints
    for line, child in zip(lines[1:3], info["children"]):
        assert line == "   " + command_line(child)
    watcher = command.console(control.ok("stats", name="Sleepy"))
    assert watcher.split("\n")[0] == "Sleepy:"
    assert [line.split(":")[0] for line in watcher.split("\n")[1:]] == [str(p) for p in
                                                                       arbiter.get_watcher("sleepy").processes]
    everything = command.console(control.ok("stats")).split("\n")
    assert [line for line in everything if line.endswith(":")] == ["Sleepy:", "tree:", "hooked:", "broken:", "idle:"]


def command_line(info: dict) -> str:
    return (f"{info['pid']}  {info['cmdline']} {info['username']} {info['nice']} {info['mem_info1']} "
            f"{info['mem_info2']} {info['cpu']} {info['mem']} {info['ctime']}")


def test_stats_console_of_an_exact_reply_and_missing_fields():
    info = {"pid": 7, "cmdline": "x", "username": "u", "nice": 0, "mem_info1": "1B", "mem_info2": "2B",
            "cpu": 0.5, "mem": 0.1, "ctime": "0:00.01", "children": [dict(pid=8, cmdline="y")]}
    reply = {"status": "ok", "infos": {"w": {"7": info}, "empty": {}}}
    assert get_command("stats").console(reply) == ("w:\n7: 7  x u 0 1B 2B 0.5 0.1 0:00.01\n"
                                                   "   8  y N/A N/A N/A N/A N/A N/A N/A\nempty:")


def test_stats_message_from_the_command_line():
    command = get_command("stats")
    assert command.message([], {}) == {}
    assert command.message(["w", "12"], {"extended": True}) == {"name": "w", "process": 12, "extended": True}
    with pytest.raises(ArgumentError):
        command.message(["w", "x"], {})
    with pytest.raises(ArgumentError):
        command.message(["w", "1", "2"], {})


def test_stats_of_many_processes_keeps_the_hub_responsive():
    """While stats reads 300 processes, a 1 ms ticker greenlet keeps running: the hub is never held for long."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    arbiter = get_arbiter([{"name": "many", "cmd": "/bin/sleep 1000", "numprocesses": 300, "graceful_timeout": 2}],
                          controller=endpoint)
    arbiter.start(background=True)
    control = Control(endpoint)
    ticks: list[float] = []
    done = []

    def ticker():
        while not done:
            ticks.append(time.monotonic())
            gevent.sleep(0.001)

    try:
        control.ok("stats", name="many")  # warms the caches
        tick = gevent.spawn(ticker)
        gevent.sleep(0.01)
        started = time.monotonic()
        reply = control.ok("stats", name="many")
        ended = time.monotonic()
        done.append(True)
        tick.join()
        assert len(reply["info"]) == 300
        # The ticker ran while the reply was being built (a hub held for the whole call would allow one tick on
        # each side of it at most). How long the pauses are is measured by benchmarks/run_stats.py, not judged here.
        during = [t for t in ticks if started <= t <= ended]
        assert len(during) >= 3, f"{len(during)} ticks in {ended - started:.3f}s"
    finally:
        done.append(True)
        control.close()
        arbiter.stop()


def test_cpu_is_measured_between_two_calls():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    arbiter = get_arbiter([{"name": "busy", "cmd": f"{PYTHON} -c 'while True: pass'", "graceful_timeout": 2}],
                          controller=endpoint)
    arbiter.start(background=True)
    control = Control(endpoint)
    try:
        pid = arbiter.get_watcher("busy").get_active_pids()[0]
        wait_for(lambda: control.ok("stats", name="busy", process=pid)["info"]["cpu"] > 20, timeout=5,
                 message="a busy process showing CPU use")
    finally:
        control.close()
        arbiter.stop()


# -- dstats --------------------------------------------------------------------------------------------------------

def test_dstats_describes_the_supervisor_itself(running):
    arbiter, control = running
    reply = control.ok("dstats")
    info = reply["info"]
    assert list(info) == CHILD_FIELDS
    assert info["pid"] == os.getpid() and info["children"] == []
    assert info["username"] == ME and info["cmdline"].startswith("python")
    assert SIZE.match(info["mem_info1"]) and CTIME.match(info["ctime"])
    assert get_command("dstats").console(reply) == "Main Process:\n    " + command_line(info)


# -- options and get -----------------------------------------------------------------------------------------------

def test_options_lists_every_option_as_json(running):
    arbiter, control = running
    options = control.ok("options", name="sleepy")["options"]
    assert "__name__" not in options
    assert options["custom_key"] == "custom value" and options["flapping.attempts"] == "4"
    assert options["stop_signal"] == 2 and options["numprocesses"] == 2
    assert options["env"] == {"A": "1", "B": "2"} and options["stdout_stream_conf"] == {}
    assert options["cmd"] == "/bin/sleep 1000" and options["graceful_timeout"] == 2.0
    # Only Circus's keys (tests/test_issue9_messages.py compares with circusd): gcircus's own are read with get.
    assert not {"name", "rlimits", "hooks", "autostart"} & set(options)
    assert control.ok("get", name="hooked", keys=["hooks"])["options"] == \
        {"hooks": {"extended_stats": f"{__name__}.add_fields"}}
    assert control.ok("get", name="sleepy", keys=["stdout_stream_conf"])["options"] == {"stdout_stream_conf": {}}


def test_options_errors(running):
    _, control = running
    assert control.error("options")["reason"] == "message invalid 'name' is missing"
    reply = control.error("options", name="nope")
    assert (reply["errno"], reply["reason"]) == (MESSAGE_ERROR, "program nope not found")


def test_options_console_is_sorted_with_env_as_pairs(running):
    _, control = running
    reply = control.ok("options", name="sleepy")
    lines = get_command("options").console(reply).split("\n")
    assert lines == sorted(lines)
    assert "env: A=1,B=2" in lines and "custom_key: custom value" in lines and "stop_signal: 2" in lines
    assert "executable: " in lines  # None shows as nothing
    assert "copy_env: False" in lines and "stdout_stream_conf: {}" in lines
    assert len(lines) == len(reply["options"])


def test_get_returns_the_asked_options(running):
    _, control = running
    reply = control.ok("get", name="sleepy", keys=["numprocesses", "env", "custom_key", "flapping.attempts",
                                                    "stop_signal", "executable"])
    assert list(reply) == ["status", "time", "options", "id"]
    assert reply["options"] == {"numprocesses": 2, "env": {"A": "1", "B": "2"}, "custom_key": "custom value",
                                "flapping.attempts": "4", "stop_signal": 2, "executable": None}
    family = control.ok("get", name="sleepy", keys=["rlimit_nofile", "rlimit_core", "hooks.after_start",
                                                    "stdout_stream.class", "flapping.window"])["options"]
    assert family == {"rlimit_nofile": 1024, "rlimit_core": None, "hooks.after_start": None,
                      "stdout_stream.class": None, "flapping.window": 1.0}
    hooked = control.ok("get", name="hooked", keys=["hooks.extended_stats"])["options"]
    assert hooked == {"hooks.extended_stats": f"{__name__}.add_fields"}
    assert control.ok("get", name="sleepy", keys="numprocesses")["options"] == {"numprocesses": 2}


def test_get_errors(running):
    _, control = running
    reply = control.error("get", name="sleepy", keys=["numprocesses", "nope"])
    assert (reply["errno"], reply["reason"]) == (MESSAGE_ERROR, "'nope' option not found")
    assert control.error("get", name="sleepy", keys=["__name__"])["reason"] == "'__name__' option not found"
    assert control.error("get", name="tree", keys=["custom_key"])["reason"] == "'custom_key' option not found"
    reply = control.error("get", name="sleepy")
    assert (reply["errno"], reply["reason"]) == (MESSAGE_ERROR, "message invalid 'keys' is missing")
    assert control.error("get", keys=["cmd"])["reason"] == "message invalid 'name' is missing"
    assert control.error("get", name="nope", keys=["cmd"])["reason"] == "program nope not found"


def test_get_console_and_message():
    command = get_command("get")
    reply = {"status": "ok", "options": {"numprocesses": 2, "env": {"Z": "1", "A": "x=y"}, "uid": None,
                                         "shell": False}}
    assert command.console(reply) == "numprocesses: 2\nenv: A=x=y,Z=1\nuid: \nshell: False"
    assert command.message(["w", "cmd", "env"], {}) == {"name": "w", "keys": ["cmd", "env"]}
    with pytest.raises(ArgumentError):
        command.message(["w"], {})


# -- globaloptions, counts, listen, ipython --------------------------------------------------------------------------

def test_globaloptions(running):
    arbiter, control = running
    options = control.ok("globaloptions")["options"]
    assert options == {"endpoint": arbiter.endpoint, "stats_endpoint": None, "pubsub_endpoint": arbiter.pubsub_endpoint,
                       "check_delay": 2.5, "multicast_endpoint": None}
    assert list(options) == ["endpoint", "stats_endpoint", "pubsub_endpoint", "check_delay", "multicast_endpoint"]
    one = control.ok("globaloptions", option="check_delay")
    assert one["options"] == {"check_delay": 2.5}
    command = get_command("globaloptions")
    assert command.console(one) == "check_delay: 2.5"
    assert command.console({"options": options}).split("\n")[:2] == [f"endpoint: {arbiter.endpoint}",
                                                                      "stats_endpoint: "]
    reply = control.error("globaloptions", option="nope")
    assert (reply["errno"], reply["reason"]) == (MESSAGE_ERROR, "'nope' not an existing option")
    assert command.console_error(reply) == "'nope' not an existing option"
    assert command.message(["endpoint"], {}) == {"option": "endpoint"}


def test_numprocesses_and_numwatchers(running):
    arbiter, control = running
    reply = control.ok("numprocesses", name="SLEEPY")
    assert list(reply) == ["status", "time", "numprocesses", "watcher_name", "id"]
    assert (reply["numprocesses"], reply["watcher_name"]) == (2, "SLEEPY")
    total = control.ok("numprocesses")
    assert "watcher_name" not in total and total["numprocesses"] == 5 == arbiter.numprocesses()
    assert control.ok("numprocesses", name="idle")["numprocesses"] == 0
    assert control.error("numprocesses", name="nope")["reason"] == "program nope not found"
    assert get_command("numprocesses").console(reply) == "2"
    watchers = control.ok("numwatchers")
    assert watchers["numwatchers"] == 5
    assert get_command("numwatchers").console(watchers) == "5"


def test_listen_is_refused_on_the_control_channel(running):
    _, control = running
    reply = control.error("listen")
    assert (reply["errno"], reply["reason"]) == (MESSAGE_ERROR, "invalid message. use a pub/sub socket")
    assert control.error("listen", topics=["watcher."])["errno"] == MESSAGE_ERROR


def test_ipython_has_no_shell(running):
    _, control = running
    reply = control.ok("ipython")
    assert reply["shell"] is False and "IPython" in reply["msg"]
    assert get_command("ipython").console(reply) == "error: Could not start ipython kernel"


# -- against gcircusd ----------------------------------------------------------------------------------------------

def test_info_commands_against_gcircusd(tmp_path, daemon_factory):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "circus.ini"
    config.write_text(textwrap.dedent(f"""\
        [circus]
        endpoint = {endpoint}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}

        [watcher:web]
        cmd = /bin/sleep 1000
        numprocesses = 2
        graceful_timeout = 2
        my_setting = hello
        flapping.attempts = 3
        """))
    daemon = daemon_factory(str(config))
    control = Control(endpoint)
    try:
        wait_for(lambda: control.ok("numprocesses", name="web")["numprocesses"] == 2, timeout=10,
                 message="gcircusd's two processes")
        assert control.ok("dstats")["info"]["pid"] == daemon.pid
        options = control.ok("options", name="web")["options"]
        assert options["my_setting"] == "hello" and options["flapping.attempts"] == "3"
        assert "__name__" not in options
        assert control.ok("get", name="web", keys=["my_setting"])["options"] == {"my_setting": "hello"}
        assert control.ok("globaloptions", option="endpoint")["options"] == {"endpoint": endpoint}
        infos = control.ok("stats")["infos"]["web"]
        assert sorted(int(pid) for pid in infos) == sorted(daemon.children())
    finally:
        control.close()
    assert daemon.stop() == 0


# -- procinfo formats ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, text", [(0, "0B"), (100, "100B"), (1023, "1023B"), (1024, "1.00K"), (1536, "1.50K"),
                                        (32757637, "31.24M"), (3 << 30, "3.00G")])
def test_human_size(size, text):
    assert procinfo.human_size(size) == text


@pytest.mark.parametrize("seconds, text", [(0, "0:00.00"), (0.29, "0:00.29"), (0.41, "0:00.41"), (5.005, "0:05.00"),
                                           (59.999, "0:59.99"), (61.5, "1:01.50"), (3725.5, "62:05.50")])
def test_cpu_time(seconds, text):
    assert procinfo.cpu_time(seconds) == text
