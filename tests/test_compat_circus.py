"""Circus 0.19's own clients drive gcircusd: `circus.client.CircusClient` and the real `circusctl` script.

Reply shapes follow PROTOCOL.md 2.5 and circusctl's console output and exit codes follow 2.5/2.7. Where gcircus
deliberately differs from Circus (section 8), the test checks gcircus's behaviour and says so in a comment.
One daemon serves the module: watchers `a` (2 processes), `b` (1) and `c` (autostart off). Tests that change
things work on a watcher they add and remove themselves, so the others stay as they were.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from circus.client import CircusClient, make_message
from circus.exc import CallError

from tests.support.daemons import start_daemon, stop_daemon
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for

CIRCUSCTL = str(Path(sys.executable).parent / "circusctl")
INFO_FIELDS = {"mem_info1", "mem_info2", "cpu", "mem", "ctime", "pid", "username", "nice", "create_time", "age",
               "cmdline", "children"}
WATCHERS = """
    [watcher:a]
    cmd = /bin/sleep 3600
    numprocesses = 2

    [watcher:b]
    cmd = /bin/sleep 3601

    [watcher:c]
    cmd = /bin/sleep 3602
    autostart = false
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon, endpoint = start_daemon(tmp_path_factory.mktemp("compat"), WATCHERS, {"a": 2, "b": 1})
    daemon.endpoint = endpoint
    with open(daemon.config) as f:
        daemon.pubsub = next(line.split("=", 1)[1].strip() for line in f if line.startswith("pubsub_endpoint"))
    yield daemon
    stop_daemon(daemon)


@pytest.fixture(scope="module")
def client(daemon):
    client = CircusClient(endpoint=daemon.endpoint, timeout=10)
    yield client
    client.stop()


def call(client, command: str, **properties) -> dict:
    return client.call(make_message(command, **properties))


def ok(reply: dict, *fields: str) -> dict:
    """Assert an ok reply with exactly `status`, `time`, the given fields and `id`, in Circus's key order."""
    assert reply.get("status") == "ok", reply
    assert list(reply) == ["status", "time", *fields, "id"], reply
    assert isinstance(reply["time"], float)
    return reply


def error(reply: dict, errno: int, reason: str) -> None:
    assert reply["status"] == "error", reply
    assert reply["errno"] == errno and reason in reply["reason"], reply


def pids_of(client, name: str) -> list[int]:
    return call(client, "list", name=name)["pids"]


def ctl(daemon, *args: str, endpoint: str | None = None, timeout: int = 10) -> subprocess.CompletedProcess:
    """Run the real circusctl against the daemon; returns the completed process (text stdout/stderr)."""
    argv = [CIRCUSCTL, "--endpoint", endpoint or daemon.endpoint, "--timeout", str(timeout), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def ctl_ok(daemon, *args: str) -> str:
    """circusctl output for a command that must succeed (exit 0, nothing on stderr)."""
    done = ctl(daemon, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert done.stderr == ""
    return done.stdout.rstrip("\n")


def ctl_error(daemon, *args: str, rc: int = 3) -> str:
    done = ctl(daemon, *args)
    assert done.returncode == rc, (args, done.stdout, done.stderr)
    assert done.stdout == ""
    return done.stderr.rstrip("\n")


@pytest.fixture
def scratch(client):
    """A watcher added for one test (stopped) and removed, with its processes, at the end."""
    name = "t" + uuid.uuid4().hex[:6]
    ok(call(client, "add", name=name, cmd="/bin/sleep 3603"))
    yield name
    if name in call(client, "list")["watchers"]:
        call(client, "rm", name=name, waiting=True)
    wait_for(lambda: name not in call(client, "list")["watchers"], message=f"{name} removed")


CIRCUS_COMMANDS = {"add", "decr", "dstats", "get", "globaloptions", "incr", "ipython", "kill", "list", "listen",
                   "listsockets", "numprocesses", "numwatchers", "options", "quit", "reload", "reloadconfig",
                   "restart", "rm", "set", "signal", "start", "stats", "status", "stop"}
LATER_ISSUE: set[str] = set()


def test_every_circus_command_is_in_the_table():
    """All of Circus's 25 commands are served, except the two of a later issue while they are missing."""
    from gcircus.control.commands import COMMANDS

    assert CIRCUS_COMMANDS - set(COMMANDS) <= LATER_ISSUE


# -- CircusClient: read-only commands ------------------------------------------------------------------------

def test_client_list(client):
    assert ok(call(client, "list"), "watchers")["watchers"] == ["a", "b", "c"]
    pids = ok(call(client, "list", name="a"), "pids")["pids"]
    assert len(pids) == 2 and all(isinstance(p, int) for p in pids)
    assert call(client, "list", name="C")["pids"] == []
    error(call(client, "list", name="nope"), 3, "program nope not found")


def test_client_status(client):
    assert ok(call(client, "status"), "statuses")["statuses"] == {"a": "active", "b": "active", "c": "stopped"}
    # The watcher's status replaces "ok" (PROTOCOL 2.3), exactly as Circus replies.
    reply = call(client, "status", name="A")
    assert list(reply) == ["status", "time", "id"] and reply["status"] == "active"
    assert call(client, "status", name="c")["status"] == "stopped"
    error(call(client, "status", name="nope"), 3, "program nope not found")


def test_client_numwatchers_and_numprocesses(client):
    assert ok(call(client, "numwatchers"), "numwatchers")["numwatchers"] == 3
    assert ok(call(client, "numprocesses"), "numprocesses")["numprocesses"] == 3
    reply = ok(call(client, "numprocesses", name="A"), "numprocesses", "watcher_name")
    assert reply["numprocesses"] == 2 and reply["watcher_name"] == "A"  # the name as sent
    error(call(client, "numprocesses", name="nope"), 3, "not found")


def test_client_options(client):
    options = ok(call(client, "options", name="a"), "options")["options"]
    assert options["numprocesses"] == 2 and options["cmd"] == "/bin/sleep 3600"
    assert {"warmup_delay", "graceful_timeout", "stop_signal", "copy_env", "singleton", "priority"} <= set(options)
    # Circus also lists the configparser artefact `__name__` (section 8 item 15); gcircus does not.
    assert "__name__" not in options
    error(call(client, "options", name="nope"), 3, "not found")


def test_client_get(client):
    reply = ok(call(client, "get", name="a", keys=["numprocesses", "cmd"]), "options")
    assert reply["options"] == {"numprocesses": 2, "cmd": "/bin/sleep 3600"}
    error(call(client, "get", name="a", keys=["numprocesses", "nope"]), 3, "'nope' option not found")
    error(call(client, "get", name="a"), 3, "keys")


def test_client_globaloptions(daemon, client):
    options = ok(call(client, "globaloptions"), "options")["options"]
    assert {"endpoint", "stats_endpoint", "pubsub_endpoint", "check_delay", "multicast_endpoint"} <= set(options)
    assert options["endpoint"] == daemon.endpoint and options["pubsub_endpoint"] == daemon.pubsub
    assert call(client, "globaloptions", option="endpoint")["options"] == {"endpoint": daemon.endpoint}
    error(call(client, "globaloptions", option="nope"), 3, "'nope' not an existing option")


def test_client_stats(client):
    a_pids = pids_of(client, "a")
    infos = ok(call(client, "stats"), "infos")["infos"]
    assert set(infos) == {"a", "b", "c"}
    assert set(infos["a"]) == {str(p) for p in a_pids}  # JSON object keys: pids as strings
    assert infos["c"] == {}
    info = infos["a"][str(a_pids[0])]
    assert INFO_FIELDS <= set(info) and info["pid"] == a_pids[0] and info["cmdline"] == "sleep"

    reply = ok(call(client, "stats", name="a"), "name", "info")
    assert reply["name"] == "a" and set(reply["info"]) == {str(p) for p in a_pids}

    reply = ok(call(client, "stats", name="a", process=a_pids[1]), "process", "info")
    assert reply["process"] == a_pids[1] and reply["info"]["pid"] == a_pids[1]
    error(call(client, "stats", name="a", process=1), 3, "process 1 not found in 'a'")
    error(call(client, "stats", name="nope"), 3, "not found")


def test_client_dstats(daemon, client):
    info = ok(call(client, "dstats"), "info")["info"]
    assert INFO_FIELDS <= set(info) and info["pid"] == daemon.pid and info["children"] == []


def test_client_listen_is_refused_on_the_control_socket(client):
    error(call(client, "listen"), 3, "use a pub/sub socket")


def test_client_ipython_reports_no_kernel(client):
    reply = ok(call(client, "ipython"), "shell", "msg")
    assert reply["shell"] is False and isinstance(reply["msg"], str)


def test_client_unknown_command(client):
    error(call(client, "frobnicate"), 2, "unknown command: 'frobnicate'")


def test_client_listsockets(client):
    assert ok(call(client, "listsockets"), "sockets")["sockets"] == []


def test_client_reloadconfig_with_an_unchanged_config_keeps_everything(daemon, client):
    before = {w: pids_of(client, w) for w in ("a", "b")}
    # gcircus adds the plan it applied (Circus replies a plain ok); CircusClient and circusctl ignore it
    assert ok(call(client, "reloadconfig", waiting=True), "plan")["plan"]["watchers"]["unchanged"] == ["a", "b", "c"]
    assert ctl_ok(daemon, "reloadconfig", "--waiting") == "ok"
    assert call(client, "list")["watchers"] == ["a", "b", "c"]
    assert {w: pids_of(client, w) for w in ("a", "b")} == before


# -- CircusClient: commands that change things ---------------------------------------------------------------

def test_client_add_start_incr_decr_set_rm(client):
    name = "t" + uuid.uuid4().hex[:6]
    reply = ok(call(client, "add", name=name, cmd="/bin/sleep", args=["3604"], start=True, waiting=True),
               "started", "kept")  # top level, as Circus replies for a waited `add --start`
    assert len(reply["started"]) == 1 and reply["kept"] == []
    try:
        error(call(client, "add", name=name.upper(), cmd="/bin/true"), 5, "already exist")
        assert ok(call(client, "incr", name=name, nb=2, waiting=True), "numprocesses")["numprocesses"] == 3
        assert len(pids_of(client, name)) == 3
        oldest = reply["started"][0]
        assert ok(call(client, "decr", name=name, waiting=True), "numprocesses")["numprocesses"] == 2
        assert oldest not in pids_of(client, name)  # the oldest process goes first
        ok(call(client, "incr", name=name))  # not waited: plain ok at once
        wait_for(lambda: len(pids_of(client, name)) == 3, message="incr without waiting took effect")
        ok(call(client, "set", name=name, options={"numprocesses": 1}, waiting=True))
        wait_for(lambda: len(pids_of(client, name)) == 1, message="set numprocesses took effect")
        assert call(client, "get", name=name, keys=["numprocesses"])["options"] == {"numprocesses": 1}
        error(call(client, "set", name=name, options={"nope": 1}), 3, "unknown key 'nope'")
    finally:
        ok(call(client, "rm", name=name, waiting=True))
    assert name not in call(client, "list")["watchers"]
    assert call(client, "numwatchers")["numwatchers"] == 3


def test_client_start_stop_restart_reload(client, scratch):
    started = ok(call(client, "start", name=scratch, waiting=True), "info")["info"]
    assert set(started) == {"started", "kept"} and len(started["started"]) == 1
    assert call(client, "status", name=scratch)["status"] == "active"
    info = ok(call(client, "restart", name=scratch, waiting=True), "info")["info"]
    assert set(info) == {"stopped", "started", "kept"} and info["stopped"] == started["started"]
    info = ok(call(client, "reload", name=scratch, waiting=True), "info")["info"]
    assert set(info) == {"stopped", "started", "kept"}
    assert pids_of(client, scratch) and pids_of(client, scratch)[0] not in started["started"]
    reply = ok(call(client, "stop", name=scratch, waiting=True), "info")
    assert reply["info"] is None  # as Circus
    assert call(client, "status", name=scratch)["status"] == "stopped" and pids_of(client, scratch) == []
    error(call(client, "start", name="nope"), 3, "program nope not found")


def test_client_signal_and_kill(client, scratch):
    ok(call(client, "start", name=scratch, waiting=True), "info")
    pid = pids_of(client, scratch)[0]
    ok(call(client, "signal", name=scratch, signum="CONT"))
    ok(call(client, "signal", name=scratch, signum=signal.SIGCONT, pid=pid))
    assert pids_of(client, scratch) == [pid]
    error(call(client, "signal", name=scratch, signum="NOSUCH"), 3, "signal invalid")
    ok(call(client, "kill", name=scratch, signum="KILL", waiting=True))
    new = wait_for(lambda: [p for p in pids_of(client, scratch) if p != pid], message="killed process replaced")
    assert len(new) == 1


def test_client_casts_get_no_reply_and_take_effect(daemon, client, scratch):
    # CircusClient has no cast helper; a DEALER sending {"msg_type": "cast"} is what Circus's plugins do.
    import zmq
    from circus.client import cast_message

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(daemon.endpoint)
    try:
        sock.send(json.dumps(cast_message("start", name=scratch)).encode())
        wait_for(lambda: pids_of(client, scratch), message="cast start took effect")
        sock.send(json.dumps(cast_message("stop", name=scratch)).encode())
        wait_for(lambda: call(client, "status", name=scratch)["status"] == "stopped", message="cast stop")
        assert not sock.poll(0), "a cast got a reply"
    finally:
        sock.close()


def test_client_timeout_is_a_callerror():
    client = CircusClient(endpoint=f"tcp://127.0.0.1:{free_port()}", timeout=0.3)
    try:
        with pytest.raises(CallError, match="Timed out"):
            call(client, "list")
    finally:
        client.stop()


def test_client_quit_stops_everything(tmp_path, daemon_factory):
    daemon, endpoint = start_daemon(tmp_path, """
        [watcher:q]
        cmd = /bin/sleep 3605
        numprocesses = 2
    """, {"q": 2})
    children = daemon.children()
    client = CircusClient(endpoint=endpoint, timeout=10)
    try:
        ok(call(client, "quit", waiting=True))
        assert daemon.wait(timeout=20) == 0
    finally:
        client.stop()
        stop_daemon(daemon)
    assert not any(alive(pid) for pid in children)


# -- the real circusctl --------------------------------------------------------------------------------------

def test_circusctl_list(daemon, client):
    assert ctl_ok(daemon, "list") == "a,b,c"
    assert ctl_ok(daemon, "list", "a") == ",".join(map(str, pids_of(client, "a")))
    assert ctl_ok(daemon, "list", "c") == ""
    assert ctl_error(daemon, "list", "nope") == "error: program nope not found"


def test_circusctl_status(daemon):
    assert ctl_ok(daemon, "status") == "a: active\nb: active\nc: stopped"
    assert ctl_ok(daemon, "status", "a") == "active"
    # circusctl prints the reply's `status` field, so an unknown watcher shows a bare `error` with Circus and
    # gcircus alike (section 8 item 3); gcircus's own gcircusctl prints the reason instead.
    assert ctl_error(daemon, "status", "nope") == "error"


def test_circusctl_counts(daemon):
    assert ctl_ok(daemon, "numwatchers") == "3"
    assert ctl_ok(daemon, "numprocesses") == "3"
    assert ctl_ok(daemon, "numprocesses", "a") == "2"
    assert ctl_error(daemon, "numprocesses", "nope") == "error: program nope not found"


def test_circusctl_options_and_get(daemon):
    lines = ctl_ok(daemon, "options", "a").splitlines()
    assert "numprocesses: 2" in lines and "cmd: /bin/sleep 3600" in lines
    assert ctl_ok(daemon, "get", "a", "numprocesses", "cmd") == "numprocesses: 2\ncmd: /bin/sleep 3600"
    assert ctl_error(daemon, "get", "a", "nope") == "error: 'nope' option not found"


def test_circusctl_globaloptions(daemon):
    lines = ctl_ok(daemon, "globaloptions").splitlines()
    assert f"endpoint: {daemon.endpoint}" in lines and f"pubsub_endpoint: {daemon.pubsub}" in lines
    assert ctl_ok(daemon, "globaloptions", "endpoint") == f"endpoint: {daemon.endpoint}"
    # circusctl prints this error's bare reason (PROTOCOL 2.5), still with exit code 3.
    assert ctl_error(daemon, "globaloptions", "nope") == "'nope' not an existing option"


def test_circusctl_stats(daemon, client):
    pids = pids_of(client, "a")
    lines = ctl_ok(daemon, "stats", "a").splitlines()
    assert lines[0] == "a:" and len(lines) == 3
    assert {line.split(":")[0] for line in lines[1:]} == {str(p) for p in pids}
    assert all(" sleep " in line for line in lines[1:])  # INFOLINE: pid, cmdline, username, ...
    out = ctl(daemon, "stats", "a", str(pids[0]))
    assert out.returncode == 0 and out.stdout.endswith("\n\n")
    assert out.stdout.startswith(f"{pids[0]}: {pids[0]}  sleep ")
    everything = ctl_ok(daemon, "stats").splitlines()
    assert {"a:", "b:", "c:"} <= set(everything)
    assert ctl_error(daemon, "stats", "a", "1") == "error: process 1 not found in 'a'"


def test_circusctl_dstats(daemon):
    out = ctl_ok(daemon, "dstats")
    assert out.startswith("Main Process:\n") and str(daemon.pid) in out


def test_circusctl_ipython_without_a_kernel(daemon):
    # The reply is ok (`shell: false`), so circusctl prints its error on stdout and exits 0, as with Circus.
    assert ctl_ok(daemon, "ipython") == "error: Could not start ipython kernel"


def test_circusctl_add_incr_decr_set_rm(daemon, client):
    name = "t" + uuid.uuid4().hex[:6]
    assert ctl_ok(daemon, "add", "--start", name, "/bin/sleep", "3606") == "ok"
    try:
        wait_for(lambda: len(pids_of(client, name)) == 1, message="add --start spawned")
        assert call(client, "options", name=name)["options"]["cmd"] == "/bin/sleep 3606"
        assert ctl_ok(daemon, "incr", name, "--waiting") == "2"
        assert ctl_ok(daemon, "incr", name, "2", "--waiting") == "4"
        assert ctl_ok(daemon, "decr", name, "3", "--waiting") == "1"
        assert ctl_ok(daemon, "incr", name) == "ok"  # without --waiting
        wait_for(lambda: len(pids_of(client, name)) == 2, message="incr applied")
        assert ctl_ok(daemon, "set", name, "numprocesses", "1", "--waiting") == "ok"
        wait_for(lambda: len(pids_of(client, name)) == 1, message="set applied")
        assert ctl_ok(daemon, "get", name, "numprocesses") == "numprocesses: 1"
        assert ctl_error(daemon, "add", name, "/bin/true").startswith("error: ")
    finally:
        assert ctl_ok(daemon, "rm", name) == "ok"
    wait_for(lambda: name not in call(client, "list")["watchers"] and not daemon_has(daemon, "3606"),
             message="rm stopped its processes")


def daemon_has(daemon, marker: str) -> bool:
    """True while one of the daemon's live children runs a command line containing `marker`."""
    for pid in daemon.children():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    return True
        except OSError:
            pass
    return False


def test_circusctl_start_stop_restart_reload(daemon, client, scratch):
    assert ctl_ok(daemon, "start", scratch, "--waiting") == "ok"
    first = pids_of(client, scratch)
    assert len(first) == 1
    assert ctl_ok(daemon, "restart", scratch, "--waiting") == "ok"
    second = pids_of(client, scratch)
    assert len(second) == 1 and second != first
    assert ctl_ok(daemon, "reload", scratch, "--waiting") == "ok"
    assert pids_of(client, scratch) not in ([], second)
    assert ctl_ok(daemon, "stop", scratch, "--waiting") == "ok"
    assert ctl_ok(daemon, "status", scratch) == "stopped"
    assert ctl_ok(daemon, "start", scratch, "--match", "simple") == "ok"  # not waited: ok at once
    wait_for(lambda: pids_of(client, scratch), message="start applied")
    assert ctl_ok(daemon, "stop", scratch.upper(), "--waiting", "--match", "glob") == "ok"
    assert pids_of(client, scratch) == []
    assert ctl_error(daemon, "start", "nope") == "error: program nope not found"


def test_circusctl_signal_and_kill(daemon, client, scratch):
    ok(call(client, "start", name=scratch, waiting=True), "info")
    pid = pids_of(client, scratch)[0]
    assert ctl_ok(daemon, "signal", scratch, "CONT") == "ok"
    assert ctl_ok(daemon, "signal", scratch, str(pid), "SIGCONT") == "ok"
    assert ctl_ok(daemon, "signal", scratch, "18", "--children", "--recursive") == "ok"
    assert pids_of(client, scratch) == [pid]
    # Circus answers an unknown signal name with an AttributeError, errno 5 and a traceback (section 8 item 6).
    assert ctl_error(daemon, "signal", scratch, "NOSUCH") == "error: signal invalid"
    assert ctl_ok(daemon, "kill", scratch, "--signum", "KILL") == "ok"
    wait_for(lambda: [p for p in pids_of(client, scratch) if p != pid], message="killed process replaced")
    # circusctl sends --graceful_timeout as a string; Circus's coroutine then crashed (section 8 item 7).
    assert ctl_ok(daemon, "kill", scratch, "--graceful_timeout", "2") == "ok"
    wait_for(lambda: pids_of(client, scratch) and pid not in pids_of(client, scratch), message="kill replaced")


def test_circusctl_listen_prints_events(daemon, client, scratch):
    listener = subprocess.Popen([CIRCUSCTL, "--endpoint", daemon.pubsub, "listen", f"watcher.{scratch}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = ""

        def event_printed():
            # The subscription may not be live yet: keep causing events until one comes through.
            nonlocal line
            running = call(client, "status", name=scratch)["status"] == "active"
            call(client, "stop" if running else "start", name=scratch, waiting=True)
            if select.select([listener.stdout], [], [], 0.1)[0]:
                line = listener.stdout.readline()
            return line
        wait_for(event_printed, 15, message="circusctl listen printed an event")
        assert line.startswith(f"b'watcher.{scratch}.") and "': b'{" in line
    finally:
        listener.kill()
        listener.wait()
        listener.stdout.close()
        listener.stderr.close()


def test_circusctl_json_output(daemon):
    out = json.loads(ctl_ok(daemon, "--json", "list"))
    assert out["status"] == "ok" and out["watchers"] == ["a", "b", "c"]
    done = ctl(daemon, "--json", "status", "nope")  # error replies exit 0 with --json
    assert done.returncode == 0 and json.loads(done.stdout)["reason"] == "program nope not found"


def test_circusctl_exit_codes_for_client_side_errors(daemon):
    done = ctl(daemon, "frobnicate")
    assert done.returncode == 2 and "circusctl: error: unrecognized arguments: frobnicate" in done.stderr
    done = ctl(daemon, "list", endpoint=f"tcp://127.0.0.1:{free_port()}", timeout=1)
    assert done.returncode == 1 and done.stderr.startswith("Timed out.")


def test_circusctl_quit(tmp_path, daemon_factory):
    daemon, endpoint = start_daemon(tmp_path, """
        [watcher:q]
        cmd = /bin/sleep 3607
    """, {"q": 1})
    try:
        done = ctl(daemon, "quit", "--waiting", endpoint=endpoint)
        assert done.returncode == 0 and done.stdout == "ok\n", (done.stdout, done.stderr)
        assert daemon.wait(timeout=20) == 0
    finally:
        stop_daemon(daemon)
