"""endpoint_owner cannot reach root: requests sent by the owner itself, a real second user, through the ipc:// socket.

A root gcircusd hands its control socket to OWNER. Whatever OWNER asks for must run and write as OWNER: a watcher
running as root can only be scaled (not given a new command), an added watcher runs with OWNER's uid and groups, and
what gcircusd does itself (hooks, stream files, its sockets and environment, limits above its own) is refused.
"""
from __future__ import annotations

import fcntl
import json
import os
import pwd
import resource
import shutil
import sys
import tempfile

import pytest
from gevent import subprocess as gsubprocess

from gcircus.daemon import Arbiter
from gcircus.watcher import Watcher
from tests.support.processes import alive
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a second user and a root daemon need root")

OWNER = "gcircus-owner"

# Runs as OWNER: sends each request of argv[2] (a JSON list of [command, props]) and prints the replies as JSON.
CLIENT = """
import json, sys
from gcircus.client import Client
client = Client(sys.argv[1], timeout=30)
print(json.dumps([client.call(command, **props) for command, props in json.loads(sys.argv[2])]))
client.close()
"""


@pytest.fixture(scope="session")
def owner() -> pwd.struct_passwd:
    """The second user, created once for the machine (xdist workers serialise on a lock file)."""
    with open(os.path.join(tempfile.gettempdir(), "gcircus-test-useradd.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(OWNER)
        except KeyError:
            gsubprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell",
                             "/usr/sbin/nologin", OWNER], check=True, timeout=60)
            return pwd.getpwnam(OWNER)


@pytest.fixture
def daemon(owner):
    """A root arbiter whose ipc:// control socket belongs to OWNER, and a way to send it requests as OWNER."""
    directory = tempfile.mkdtemp(prefix="gcircus-owner-")
    os.chmod(directory, 0o711)  # OWNER reaches the socket, cannot write here
    root_watcher = Watcher("rootw", "/bin/sleep 1000", autostart=False, graceful_timeout=5)
    arbiter = Arbiter([root_watcher], endpoint=f"ipc://{directory}/control.sock", endpoint_owner=OWNER)
    arbiter.start(background=True)

    def as_owner(*requests: tuple[str, dict]) -> list[dict]:
        result = gsubprocess.run(["setpriv", "--reuid", OWNER, "--regid", OWNER, "--clear-groups", sys.executable,
                                  "-c", CLIENT, arbiter.endpoint, json.dumps(requests)],
                                 stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE, text=True, timeout=60, cwd="/")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    arbiter.as_owner = as_owner
    arbiter.directory = directory
    yield arbiter
    arbiter.stop(graceful=False)
    arbiter.wait_channels_closed(5)
    shutil.rmtree(directory)


def refused(reply: dict) -> str:
    assert reply["status"] == "error" and reply["errno"] == 3, reply
    return reply["reason"]


def ok(reply: dict) -> dict:
    assert reply["status"] == "ok", reply
    return reply


def identity_of(pid: int) -> tuple[int, int, list[int]]:
    wait_for(lambda: os.readlink(f"/proc/{pid}/exe").endswith("/sleep"), 30, message="command exec'd")
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return (int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0]),
            sorted(int(g) for g in fields["Groups"].split()))


def test_the_owner_cannot_change_what_a_root_watcher_runs(daemon):
    replies = daemon.as_owner(
        ("set", {"name": "rootw", "options": {"cmd": "/bin/sh -c 'id > /tmp/owned'"}}),
        ("set", {"name": "rootw", "options": {"env": {"LD_PRELOAD": "/tmp/x.so"}}}),
        ("set", {"name": "rootw", "options": {"args": "--help", "numprocesses": 2}}),
        ("set", {"name": "rootw", "options": {"uid": OWNER, "cmd": "/bin/true"}}),
        ("set", {"name": "rootw", "options": {"rlimit_core": 0}}),
        ("set", {"name": "rootw", "options": {"numprocesses": 3, "graceful_timeout": 2}, "waiting": True}),
        ("list", {}))
    for reply in replies[:5]:
        assert "does not run as endpoint_owner" in refused(reply)
    assert "cmd" in replies[0]["reason"] and "args" in replies[2]["reason"]
    ok(replies[5])  # how many processes run, and how they stop, stays open
    assert ok(replies[6])["watchers"] == ["rootw"]
    watcher = daemon.get_watcher("rootw")
    assert (watcher.cmd, watcher.uid, watcher.working_dir) == ("/bin/sleep 1000", None, os.getcwd())
    assert (watcher.numprocesses, watcher.graceful_timeout) == (3, 2)


def test_an_added_watcher_runs_as_the_owner_with_its_groups_only(daemon, owner):
    replies = daemon.as_owner(
        ("add", {"name": "g0", "cmd": "/bin/sleep 1000", "options": {"uid": OWNER, "gid": 0}, "start": True}),
        ("add", {"name": "g0", "cmd": "/bin/sleep 1000", "options": {"uid": OWNER, "gid": "root"}}),
        ("add", {"name": "anyone", "cmd": "/bin/sleep 1000", "options": {"uid": "root"}}),
        ("add", {"name": "mine", "cmd": "/bin/sleep 1000", "options": {"uid": OWNER}, "start": True,
                 "waiting": True}))
    for reply in replies[:2]:
        assert "group(s) 0" in refused(reply)
    assert refused(replies[2]) == "uid does not match endpoint_owner"
    pid = ok(replies[3])["started"][0]
    assert identity_of(pid) == (owner.pw_uid, owner.pw_gid, [owner.pw_gid])
    assert [w.name for w in daemon.watchers] == ["rootw", "mine"]


def test_the_owner_changes_its_own_watcher_but_not_who_it_runs_as(daemon, owner):
    replies = daemon.as_owner(
        ("add", {"name": "mine", "cmd": "/bin/sleep 1000", "options": {"uid": owner.pw_uid}, "start": True,
                 "waiting": True}),
        ("set", {"name": "mine", "options": {"uid": "root"}}),
        ("set", {"name": "mine", "options": {"gid": 0}}),
        ("set", {"name": "mine", "options": {"cmd": "/bin/sleep 999", "env": {"A": "1"}}, "waiting": True}),
        ("list", {"name": "mine"}))
    assert refused(replies[1]) == "uid does not match endpoint_owner"
    assert "group(s) 0" in refused(replies[2])
    ok(replies[3])
    watcher = daemon.get_watcher("mine")
    assert (watcher.uid, watcher.gid, watcher.cmd) == (owner.pw_uid, None, "/bin/sleep 999")
    pid = int(ok(replies[4])["pids"][0])
    assert alive(pid) and identity_of(pid)[0] == owner.pw_uid


def test_what_gcircusd_does_itself_is_refused(daemon, owner):
    target = os.path.join(daemon.directory, "written-by-root.log")  # a directory OWNER cannot write
    file_stream = {"uid": OWNER, "stdout_stream.class": "FileStream", "stdout_stream.filename": target}
    replies = daemon.as_owner(
        ("add", {"name": "s", "cmd": "/bin/echo hi", "options": file_stream, "start": True, "waiting": True}),
        ("add", {"name": "s", "cmd": "/bin/echo hi", "start": True, "waiting": True,
                 "options": {"uid": OWNER, "stderr_stream": {"class": "FileStream", "filename": target}}}),
        ("add", {"name": "h", "cmd": "/bin/true", "options": {"uid": OWNER, "hooks.before_start": "os.getcwd"}}),
        ("add", {"name": "e", "cmd": "/bin/true", "options": {"uid": OWNER, "copy_env": True}}),
        ("add", {"name": "k", "cmd": "/bin/true", "options": {"uid": OWNER, "use_sockets": True}}),
        ("add", {"name": "d", "cmd": "/bin/true", "options": {"uid": OWNER, "working_dir": daemon.directory}}),
        ("add", {"name": "mine", "cmd": "/bin/sleep 1000", "options": {"uid": OWNER, "rlimit_core": 0}}),
        ("set", {"name": "mine", "options": {"stdout_stream.filename": target}}),
        ("set", {"name": "mine", "options": {"hooks": {"after_start": "os.getcwd"}}}))
    options = ("stdout_stream", "stderr_stream", "hooks", "copy_env", "use_sockets", "working_dir")
    for reply, option in zip(replies[:6], options):
        assert refused(reply).startswith(option), reply
    ok(replies[6])
    assert refused(replies[7]).startswith("stdout_stream.filename")
    assert refused(replies[8]).startswith("hooks")
    assert not os.path.exists(target)
    assert [w.name for w in daemon.watchers] == ["rootw", "mine"]
    assert daemon.get_watcher("mine").stdout_stream == {} and not daemon.get_watcher("mine").hooks_config


def test_a_limit_above_gcircusds_own_hard_limit_is_refused(daemon):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # finite on Linux (fs.nr_open bounds it)
    replies = daemon.as_owner(
        ("add", {"name": "mine", "cmd": "/bin/true", "options": {"uid": OWNER, "rlimit_nofile": hard + 1}}),
        ("add", {"name": "mine", "cmd": "/bin/true", "options": {"uid": OWNER, "rlimit_nofile": hard}}))
    assert "above gcircusd's own hard limit" in refused(replies[0])
    ok(replies[1])


def test_set_checks_the_owner_again_under_the_watcher_lock():
    """The check a `set` passed when queued runs again where the change applies: a refusal there changes nothing."""
    watcher = Watcher("w", "/bin/sleep 1000", autostart=False)

    def refuse():
        assert watcher._lock.locked()
        raise PermissionError("who it runs as changed meanwhile")

    with pytest.raises(PermissionError):
        watcher.set_options({"cmd": "/bin/sleep 999"}, refuse)
    assert watcher.cmd == "/bin/sleep 1000"
