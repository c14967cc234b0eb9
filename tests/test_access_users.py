"""Who may do what on the control channel, with a real second local user against a real root gcircusd.

The user is made with useradd for this module (a unique name, removed at the end); its requests are sent by a client
process running as that user (setpriv), over an ipc:// socket and over loopback tcp://. Each refusal is errno 7
(ACCESS_REFUSED), names the role needed and the peer, and changes nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import stat
import sys
import tempfile

import pytest
from gevent import subprocess as gsubprocess

from gcircus.client import Client
from gcircus.wire.errors import ACCESS_REFUSED
from tests.support.audit import wait_lines
from tests.support.daemons import started
from tests.support.ports import free_port
from tests.support.processes import PYTHON
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a second local user (useradd) and a root gcircusd need root")

# Runs as the second user: sends each request of argv[2] (a JSON list of [command, props]) and prints the replies as
# JSON; a request that gets no reply (a socket it may not connect to) is {"status": "no reply", "reason": ...}.
CLIENT = """
import json, sys
from gcircus.client import CallError, Client
client = Client(sys.argv[1], timeout=float(sys.argv[3]))
replies = []
for command, props in json.loads(sys.argv[2]):
    try:
        replies.append(client.call(command, **props))
    except CallError as exc:
        replies.append({"status": "no reply", "reason": str(exc)})
print(json.dumps(replies))
client.close()
"""


@pytest.fixture(scope="module")
def stranger() -> pwd.struct_passwd:
    """A second local user (and its own group, of the same name), removed once the module is done."""
    name = f"gcacc{secrets.token_hex(4)}"
    gsubprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                     name], check=True, timeout=60)
    try:
        yield pwd.getpwnam(name)
    finally:
        gsubprocess.run(["userdel", name], timeout=60, stderr=gsubprocess.DEVNULL)
        gsubprocess.run(["groupdel", name], timeout=60, stderr=gsubprocess.DEVNULL)


def as_user(user: pwd.struct_passwd, endpoint: str, *requests: tuple[str, dict], timeout: float = 10) -> list[dict]:
    """The replies `user` gets for `requests`, sent in order by one client process running as that user."""
    result = gsubprocess.run(["setpriv", "--reuid", str(user.pw_uid), "--regid", str(user.pw_gid), "--init-groups",
                              sys.executable, "-c", CLIENT, endpoint, json.dumps(requests), str(timeout)],
                             stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refused(reply: dict, role: str, user: pwd.struct_passwd) -> str:
    assert reply["status"] == "error" and reply["errno"] == ACCESS_REFUSED, reply
    assert f"needs the {role} role" in reply["reason"] and user.pw_name in reply["reason"], reply
    return reply["reason"]


def ok(reply: dict) -> dict:
    assert reply["status"] == "ok", reply
    return reply


@pytest.fixture
def shared_dir():
    """A directory other users may traverse (not list, not write) for the ipc:// sockets; the tmp_path of a root
    test is not reachable by anyone else."""
    directory = tempfile.mkdtemp(prefix="gcircus-access-")
    os.chmod(directory, 0o711)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def start(tmp_path, daemon_factory):
    """start(endpoint, access="", circus="") -> a root gcircusd with one `w` watcher (1 process), answering."""
    def run(endpoint: str, access: str = "", circus: str = ""):
        config = str(tmp_path / "circus.ini")
        with open(config, "w") as f:
            f.write(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n{circus}\n\n"
                    f"[watcher:w]\ncmd = /bin/sleep 1000\ngraceful_timeout = 5\n\n[access]\n{access}\n")
        daemon = daemon_factory(config)
        started(daemon, 1, timeout=30)
        daemon.endpoint = endpoint
        daemon.config_path = config
        return daemon
    return run


def pids(endpoint: str) -> list[int]:
    with contextlib.closing(Client(endpoint, timeout=10)) as client:
        return sorted(client.call("list", name="w")["pids"])


def test_a_0600_ipc_socket_keeps_another_user_out(start, shared_dir, stranger):
    daemon = start(f"ipc://{shared_dir}/control.sock")
    before = pids(daemon.endpoint)
    replies = as_user(stranger, daemon.endpoint, ("stop", {}), timeout=3)
    assert replies[0]["status"] == "no reply", replies  # EACCES on connect: the request never reaches gcircusd
    assert pids(daemon.endpoint) == before


def test_a_reachable_ipc_socket_still_identifies_each_request(start, shared_dir, stranger):
    """The socket file's mode decides who may connect; the grant decides what each request may do (no grant on
    ipc://: no role at all)."""
    daemon = start(f"ipc://{shared_dir}/control.sock", circus="endpoint_mode = 0666")
    before = pids(daemon.endpoint)
    replies = as_user(stranger, daemon.endpoint, ("list", {}), ("stop", {"waiting": True}))
    assert "has no role" in refused(replies[0], "read", stranger)
    refused(replies[1], "operate", stranger)
    assert pids(daemon.endpoint) == before


def test_a_refused_user_is_audited_with_its_identity(start, shared_dir, stranger, tmp_path):
    """Each refusal is an audit line: result refused, errno 7, and the peer as the kernel gave it (uid, gid, pid)."""
    audit = tmp_path / "audit.log"
    daemon = start(f"ipc://{shared_dir}/control.sock", circus=f"endpoint_mode = 0666\naudit_log = {audit}")
    replies = as_user(stranger, daemon.endpoint, ("stop", {"name": "w", "waiting": True}), ("list", {}))
    refused(replies[0], "operate", stranger)
    refused(replies[1], "read", stranger)
    lines = wait_lines(audit, 2)
    assert [line["command"] for line in lines] == ["stop", "list"]  # a refused read is recorded too
    for line in lines:
        assert (line["result"], line["errno"]) == ("refused", ACCESS_REFUSED), line
        peer = line["peer"]
        assert (peer["uid"], peer["gid"], peer["user"]) == (stranger.pw_uid, stranger.pw_gid, stranger.pw_name), line
        assert isinstance(peer["pid"], int) and peer["pid"] > 0, line
    assert lines[0]["properties"] == {"name": "w", "waiting": True}


def test_granted_read_lists_but_cannot_stop(start, shared_dir, stranger):
    """The grant is to the user's group; the socket is reached through endpoint_group, in a directory gcircusd
    creates for it (0710, that group's)."""
    group = stranger.pw_name  # useradd --user-group: its own group
    daemon = start(f"ipc://{shared_dir}/run/control.sock", access=f"group:{group} = read",
                   circus=f"endpoint_mode = 0660\nendpoint_group = {group}")
    made, sock = os.stat(f"{shared_dir}/run"), os.stat(f"{shared_dir}/run/control.sock")
    assert (stat.S_IMODE(made.st_mode), made.st_gid) == (0o710, stranger.pw_gid)
    assert (stat.S_IMODE(sock.st_mode), sock.st_uid, sock.st_gid) == (0o660, 0, stranger.pw_gid)
    before = pids(daemon.endpoint)
    replies = as_user(stranger, daemon.endpoint, ("list", {}), ("status", {"name": "w"}), ("stop", {"waiting": True}),
                      ("signal", {"name": "w", "signum": "KILL"}))
    assert ok(replies[0])["watchers"] == ["w"] and replies[1]["status"] == "active"  # Circus's status reply
    assert "has the read role" in refused(replies[2], "operate", stranger)
    refused(replies[3], "operate", stranger)
    assert pids(daemon.endpoint) == before


def test_granted_operate_restarts_but_cannot_add(start, shared_dir, stranger):
    daemon = start(f"ipc://{shared_dir}/control.sock", access=f"user:{stranger.pw_name} = operate",
                   circus="endpoint_mode = 0666")
    before = pids(daemon.endpoint)
    replies = as_user(stranger, daemon.endpoint, ("restart", {"name": "w", "waiting": True}),
                      ("add", {"name": "x", "cmd": "/bin/sleep 1000"}),
                      ("set", {"name": "w", "options": {"cmd": "/bin/sleep 999"}}),
                      ("set", {"name": "w", "options": {"numprocesses": 2, "graceful_timeout": 3}, "waiting": True}),
                      ("rm", {"name": "w"}), ("reloadconfig", {}))
    ok(replies[0])
    for reply in (replies[1], replies[2], replies[4], replies[5]):
        assert "has the operate role" in refused(reply, "define", stranger)
    ok(replies[3])  # only scheduling keys: operate is enough
    with contextlib.closing(Client(daemon.endpoint, timeout=10)) as client:
        assert client.call("list")["watchers"] == ["w"]
        assert client.call("get", name="w", keys=["cmd", "numprocesses"])["options"] == \
            {"cmd": "/bin/sleep 1000", "numprocesses": 2}
    after = wait_for(lambda: len(pids(daemon.endpoint)) == 2 and pids(daemon.endpoint), 30, message="2 processes")
    assert not set(before) & set(after)  # restarted


def test_loopback_tcp_without_a_grant_reads_only_and_root_defines(start, stranger):
    daemon = start(f"tcp://127.0.0.1:{free_port()}")
    before = pids(daemon.endpoint)
    replies = as_user(stranger, daemon.endpoint, ("list", {}), ("stop", {"waiting": True}),
                      ("add", {"name": "x", "cmd": "/bin/sleep 1000"}))
    assert ok(replies[0])["watchers"] == ["w"]
    assert "has the read role" in refused(replies[1], "operate", stranger)
    refused(replies[2], "define", stranger)
    assert pids(daemon.endpoint) == before
    with contextlib.closing(Client(daemon.endpoint, timeout=10)) as client:  # this test runs as root
        ok(client.call("add", name="x", cmd="/bin/sleep 1000", start=True, waiting=True))
        ok(client.call("stop", name="w", waiting=True))
        assert client.call("list", name="w")["pids"] == []


def test_gcircusctl_as_another_user_says_which_role_is_missing(start, stranger):
    daemon = start(f"tcp://127.0.0.1:{free_port()}")
    result = gsubprocess.run(["setpriv", "--reuid", str(stranger.pw_uid), "--regid", str(stranger.pw_gid),
                              "--init-groups", PYTHON, "-m", "gcircus.cli.gcircusctl", "--endpoint", daemon.endpoint,
                              "stop", "w"], stdout=gsubprocess.PIPE, stderr=gsubprocess.STDOUT, text=True,
                             timeout=60, cwd="/")
    assert result.returncode != 0 and "needs the operate role" in result.stdout, result.stdout


def identity_of(pid: int) -> tuple[int, int]:
    wait_for(lambda: os.readlink(f"/proc/{pid}/exe").endswith("/sleep"), 30, message="command exec'd")
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def test_a_define_client_of_root_runs_watchers_only_as_itself_or_its_runas_users(start, stranger):
    """The uid rule: never root, never someone else unless [access] runas lists them; reloadconfig applies a changed
    [access] at once."""
    daemon = start(f"tcp://127.0.0.1:{free_port()}", access=f"user:{stranger.pw_name} = define")
    nobody = pwd.getpwnam("nobody")
    replies = as_user(stranger, daemon.endpoint,
                      ("add", {"name": "mine", "cmd": "/bin/sleep 1000", "start": True, "waiting": True}),
                      ("add", {"name": "r", "cmd": "/bin/sleep 1000", "options": {"uid": "root"}}),
                      ("add", {"name": "n", "cmd": "/bin/sleep 1000", "options": {"uid": "nobody"}}),
                      ("add", {"name": "h", "cmd": "/bin/true", "options": {"hooks.before_start": "os.getcwd"}}),
                      ("set", {"name": "w", "options": {"cmd": "/bin/sh -c 'id > /tmp/owned'"}}),
                      ("set", {"name": "mine", "options": {"uid": "root"}}))
    pid = ok(replies[0])["started"][0]
    assert identity_of(pid) == (stranger.pw_uid, stranger.pw_gid)
    for reply in (replies[1], replies[2], replies[5]):
        assert reply["errno"] == 3 and "is not a user" in reply["reason"] and "runas" in reply["reason"], reply
    assert replies[3]["errno"] == 3 and replies[3]["reason"].startswith("hooks"), replies[3]
    assert replies[4]["errno"] == 3 and "does not run as" in replies[4]["reason"], replies[4]

    with open(daemon.config_path, "a") as f:
        f.write(f"runas:{stranger.pw_name} = nobody\n")
    with contextlib.closing(Client(daemon.endpoint, timeout=30)) as client:
        plan = ok(client.call("reloadconfig", waiting=True))["plan"]
        assert plan["access"] == {"changed": True}
    replies = as_user(stranger, daemon.endpoint,
                      ("add", {"name": "n", "cmd": "/bin/sleep 1000", "options": {"uid": "nobody"}, "start": True,
                               "waiting": True}),
                      ("add", {"name": "r", "cmd": "/bin/sleep 1000", "options": {"uid": 0}}))
    assert identity_of(ok(replies[0])["started"][0])[0] == nobody.pw_uid
    assert replies[1]["errno"] == 3 and "never root" in replies[1]["reason"], replies[1]
    with contextlib.closing(Client(daemon.endpoint, timeout=30)) as client:
        assert sorted(client.call("list")["watchers"]) == ["mine", "n", "w"]
        for name in ("mine", "n"):
            ok(client.call("rm", name=name, waiting=True))  # nothing of the user's left for userdel
