"""The access layer's rules, without a second user: the roles of the command table, the decision function (fuzzed
against the rules as README states them), the [access] section's errors, the peer's identity on a real loopback
connection, and the ipc:// socket files and directories gcircusd makes or refuses.
"""
from __future__ import annotations

import os
import pwd
import socket
import stat

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from gcircus.config import load_config
from gcircus.control import access, peers
from gcircus.control.commands import COMMANDS
from gcircus.control.commands.base import COMMAND_ROLES, Command, register
from gcircus.errors import ConfigError
from gcircus.grants import Grants
from gcircus.options import WATCHER_OPTIONS, only_schedules
from gcircus.roles import DEFINE, NONE, OPERATE, READ, ROLES, rank
from gcircus.wire.endpoints import IpcMode, bind_private, close_bound
from gcircus.wire.errors import ACCESS_REFUSED
from tests.support.daemons import run_cli, started, write_config
from tests.support.ports import free_port

# -- the command table -------------------------------------------------------------------------------------------


def test_every_command_declares_its_role():
    missing = {name: command.role for name, command in COMMANDS.items() if command.role not in COMMAND_ROLES}
    assert not missing
    assert {name for name, c in COMMANDS.items() if c.role == DEFINE} == {"add", "rm", "set", "reloadconfig",
                                                                          "upgrade"}
    assert {name for name, c in COMMANDS.items() if c.role == OPERATE} == {
        "start", "stop", "restart", "reload", "incr", "decr", "signal", "kill", "reopen", "quit"}


def test_a_command_without_a_role_cannot_be_registered():
    class Roleless(Command):
        """Nothing."""

    with pytest.raises(TypeError, match="declares no role"):
        register(Roleless)
    assert "roleless" not in COMMANDS


def test_set_needs_operate_for_scheduling_keys_only():
    set_ = COMMANDS["set"]
    assert set_.role_for({"options": {"numprocesses": 3, "graceful_timeout": 2, "flapping.attempts": 4}}) == OPERATE
    assert set_.role_for({"options": {"numprocesses": 3, "cmd": "/bin/true"}}) == DEFINE
    for key in ("cmd", "env", "uid", "gid", "hooks", "working_dir", "stdout_stream.class", "rlimit_nofile"):
        assert set_.role_for({"options": {key: "x"}}) == DEFINE, key
    assert set_.role_for({"options": {}}) == DEFINE


# -- the decision, fuzzed ------------------------------------------------------------------------------------------

UIDS = [0, 500, 1000, 1001, 1002]
GIDS = [None, 0, 100, 1000, 1001]
CURVES = ["grafana", "deploy"]
role = st.sampled_from(ROLES)
maybe_role = st.none() | role
SET_KEYS = [name for name in WATCHER_OPTIONS if not name.endswith("*")] + ["env", "hooks", "flapping.window",
                                                                          "rlimit_core", "hooks.after_start"]

peer_strategy = st.builds(
    peers.Peer, transport=st.sampled_from(["ipc", "tcp", "inproc", "tipc"]), uid=st.none() | st.sampled_from(UIDS),
    gid=st.sampled_from(GIDS), pid=st.none() | st.integers(1, 1 << 22), user=st.none() | st.text(max_size=8),
    curve=st.none() | st.sampled_from(CURVES)) | st.builds(  # an HTTP API client: the role of its token
    peers.Peer, transport=st.just(peers.HTTP), http=st.sampled_from(["bearer", "session", "anonymous"]),
    address=st.sampled_from(["127.0.0.1", "unix"]), role=st.sampled_from([READ, OPERATE, DEFINE]))
grants_strategy = st.builds(
    Grants, users=st.dictionaries(st.sampled_from(UIDS), role), any_user=maybe_role,
    groups=st.dictionaries(st.sampled_from([g for g in GIDS if g is not None]), role),
    curves=st.dictionaries(st.sampled_from(CURVES), role), any_curve=maybe_role, everyone=maybe_role,
    local_tcp=role)


def entitled(peer: peers.Peer, policy: access.Policy) -> set[str]:
    """Every role some rule of README's list gives `peer`, written as those rules read (not as access.py does)."""
    grants = policy.grants
    roles = {NONE, grants.everyone}
    if peer.transport == "http":  # [http] token_role; [access] knows no HTTP client but through everyone
        return roles | {peer.role}
    if peer.transport == "tcp" and peer.curve is None:
        roles.add(grants.local_tcp)
    if peer.curve is not None:
        roles |= {role for name, role in grants.curves.items() if name == peer.curve} | {grants.any_curve}
        return roles
    if peer.uid is None:
        return roles
    if peer.transport == "inproc" or peer.uid == 0 or peer.uid == policy.daemon_uid or peer.uid == policy.owner_uid:
        roles.add(DEFINE)
    roles |= {role for uid, role in grants.users.items() if uid == peer.uid} | {grants.any_user}
    roles |= {role for gid, role in grants.groups.items() if gid in policy.groups_of(peer)}
    return roles


@settings(max_examples=2000, deadline=None)
@given(peer=peer_strategy, grants=grants_strategy, daemon_uid=st.sampled_from([0, 1000]),
       owner_uid=st.none() | st.sampled_from([1001]), name=st.sampled_from(sorted(COMMANDS)),
       keys=st.lists(st.sampled_from(SET_KEYS), min_size=1, max_size=4))
def test_no_command_goes_through_without_its_role(peer, grants, daemon_uid, owner_uid, name, keys):
    policy = access.Policy(grants, daemon_uid, owner_uid, groups_of=lambda p: [] if p.gid is None else [p.gid])
    command = COMMANDS[name]
    props = {"name": "w", "options": dict.fromkeys(keys, "1")}
    need = command.role_for(props)
    assert need == command.role or (name == "set" and need == OPERATE and all(only_schedules(k) for k in keys))
    best = max((rank(r) for r in entitled(peer, policy) if r is not None), default=0)
    refused = access.refusal(peer, command, props, policy)
    if refused is None:
        assert best >= rank(need), (peer, grants, name)
    else:
        assert best < rank(need) and refused.errno == ACCESS_REFUSED
        assert f"needs the {need} role" in refused.reason and str(peer) in refused.reason
    limit = access.run_as_limit(peer, policy)
    if daemon_uid == 0 and peer.uid != 0 and peer.transport not in ("inproc", "http"):
        assert limit is not None and 0 not in limit.uids and limit.uid == (peer.uid if peer.curve is None else None)
    else:
        assert limit is None


def test_a_curve_key_no_longer_listed_gets_no_role_whatever_is_granted():
    grants = Grants(curves={"bob": DEFINE}, any_curve=DEFINE, everyone=DEFINE)
    listed = {"alice"}
    policy = access.Policy(grants, 0, curve_listed=listed.__contains__)
    alice, bob = peers.Peer("tcp", curve="alice"), peers.Peer("tcp", curve="bob")
    assert access.role_of(alice, policy) == DEFINE and access.refusal(alice, COMMANDS["list"], {}, policy) is None
    assert access.role_of(bob, policy) == NONE
    refused = access.refusal(bob, COMMANDS["list"], {}, policy)
    assert refused is not None and refused.errno == ACCESS_REFUSED
    assert "CURVE client 'bob'" in refused.reason and "no longer in curve_clients" in refused.reason
    # Without CURVE (curve_listed None) nothing is revoked; local peers are never asked about.
    assert access.role_of(bob, access.Policy(grants, 0)) == DEFINE
    assert access.role_of(peers.Peer("ipc", uid=0, gid=0), policy) == DEFINE


# -- the [access] section --------------------------------------------------------------------------------------------

def access_config(tmp_path, lines: str) -> str:
    return write_config(tmp_path / "circus.ini", f"[watcher:w]\ncmd = /bin/true\n\n[access]\n{lines}\n")


def test_access_section_keys_hold_a_colon(tmp_path):
    nobody = pwd.getpwnam("nobody")
    config = load_config(access_config(tmp_path, "user:nobody = Operate\ngroup:0 = read\ncurve:grafana = read\n"
                                                 "curve:* = none\nuser:* = read\nrunas:nobody = 1234, 1235\n"
                                                 "runas:curve:grafana = nobody\neveryone = read\nlocal_tcp = none"))
    grants = config.access
    assert grants.users == {nobody.pw_uid: OPERATE} and grants.groups == {0: READ} and grants.any_user == READ
    assert grants.curves == {"grafana": READ} and grants.any_curve == NONE
    assert grants.runas_users == {nobody.pw_uid: frozenset({1234, 1235})}
    assert grants.runas_curves == {"grafana": frozenset({nobody.pw_uid})}
    assert (grants.everyone, grants.local_tcp) == (READ, NONE)
    assert load_config(access_config(tmp_path, "")).access == Grants()


@pytest.mark.parametrize("line, option, words", [
    ("usr:nobody = read", "usr:nobody", "unknown option"),
    ("user:nobody = admin", "user:nobody", "expected a role"),
    ("runas:nobody = root", "runas:nobody", "root cannot be listed"),
    ("runas:nobody = 0", "runas:nobody", "root cannot be listed"),
    ("runas:nobody = ,", "runas:nobody", "expected one or more user names"),
    ("user: = read", "user:", "unknown option"),
])
def test_access_section_mistakes_name_file_section_and_option(tmp_path, line, option, words):
    path = access_config(tmp_path, line)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.file, caught.value.section, caught.value.option) == (path, "access", option)
    assert words in str(caught.value)


def test_an_unknown_user_or_group_grants_nothing_and_is_said(tmp_path, caplog):
    config = load_config(access_config(tmp_path, "user:no-such-user-x = define\ngroup:no-such-group-x = define\n"
                                                 "runas:nobody = no-such-user-x\nuser:nobody = read"))
    assert config.access == Grants(users={pwd.getpwnam("nobody").pw_uid: READ})
    for words in ("user:no-such-user-x: unknown user", "group:no-such-group-x: unknown group",
                  "runas:nobody: unknown user"):
        assert any(words in record.getMessage() and "grants nothing" in record.getMessage()
                   for record in caplog.records), words


def test_only_an_equals_sign_separates_an_access_key_from_its_value(tmp_path):
    with pytest.raises(ConfigError, match="expected 'name = value'"):
        load_config(access_config(tmp_path, "everyone: read"))


# -- identity on a real connection -------------------------------------------------------------------------------

@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_the_owner_of_a_loopback_tcp_client_socket_is_found_and_a_stranger_is_not(family, host):
    try:
        server = socket.create_server((host, 0), family=family)
    except OSError:
        pytest.skip(f"no {host} here")
    client = socket.create_connection(server.getsockname()[:2])
    accepted, _ = server.accept()
    try:
        ours, theirs = accepted.getpeername(), accepted.getsockname()
        assert peers.tcp_socket_owner(ours, theirs) == os.geteuid()  # netlink sock_diag
        assert peers._table_owner(family, peers._proc_address(family, host, ours[1]),  # the /proc/net fallback
                                  peers._proc_address(family, host, theirs[1])) == os.geteuid()
        assert peers.tcp_socket_owner((host, 1), (host, 2)) is None
    finally:
        for sock in (client, accepted, server):
            sock.close()


def test_each_request_is_identified_from_its_own_message(tmp_path):
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    dealer = context.socket(zmq.DEALER)
    try:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(b"{}")
        message = router.recv_multipart(copy=False)
        peer = peers.identify(peers.sight(message[-1], "tcp"))
        assert (peer.uid, peer.curve, peer.transport) == (os.geteuid(), None, "tcp")
        assert peer.audit() == {"uid": os.geteuid(), "gid": None, "pid": None, "user": peer.user}
    finally:
        for sock in (dealer, router):
            sock.close(linger=0)
        context.term()
    assert peers.Peer("tcp", curve="grafana").audit() == {"curve": "grafana"}
    assert peers.Peer("tcp").anonymous and "anonymous" in str(peers.Peer("tcp"))
    assert access.role_of(peers.Peer("tcp"), access.Policy(Grants(), 0)) == READ  # local_tcp's default
    assert access.role_of(peers.Peer("ipc", uid=4242, gid=4242), access.Policy(Grants(), 0)) == NONE


# -- ipc:// files and directories ----------------------------------------------------------------------------------

def bound(endpoint: str, ipc: IpcMode | None = None) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    try:
        bind_private(sock, "endpoint", endpoint, False, ipc)
    finally:
        close_bound(sock, "", linger=0)
        context.term()


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_missing_socket_directory_is_created_0700_and_the_file_0600(tmp_path):
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    path = tmp_path / "run" / "deep" / "control.sock"
    try:
        bind_private(sock, "endpoint", f"ipc://{path}", False)
        assert (mode(tmp_path / "run"), mode(path.parent), mode(path)) == (0o700, 0o700, 0o600)
    finally:
        close_bound(sock, f"ipc://{path}", linger=0)
        context.term()
    wider = tmp_path / "wider" / "control.sock"
    bound(f"ipc://{wider}", IpcMode(mode=0o660, group=str(os.getegid())))
    assert mode(wider.parent) == 0o710
    bound(f"ipc://{tmp_path / 'owned' / 'c.sock'}", IpcMode(owner=str(os.geteuid())))
    assert mode(tmp_path / "owned") == 0o701  # the owner is an "other": it may pass, not list


@pytest.mark.parametrize("sticky", [False, True])
def test_a_directory_others_can_write_needs_the_sticky_bit(tmp_path, sticky):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777 if sticky else 0o777)
    endpoint = f"ipc://{shared}/sub/control.sock"
    if sticky:
        bound(endpoint)
        return
    with pytest.raises(ValueError, match=f"the directory {shared} is writable by other users"):
        bound(endpoint)
    assert not (shared / "sub").exists()


@pytest.mark.parametrize("option", ["endpoint", "pubsub_endpoint", "stats_endpoint"])
def test_gcircusd_refuses_to_bind_under_an_unsafe_directory(tmp_path, option):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o775)  # group-writable is enough
    endpoints = {"endpoint": f"tcp://127.0.0.1:{free_port()}", "pubsub_endpoint": f"tcp://127.0.0.1:{free_port()}",
                 "stats_endpoint": f"tcp://127.0.0.1:{free_port()}"}
    endpoints[option] = f"ipc://{shared}/{option}.sock"
    lines = "\n".join(f"{key} = {value}" for key, value in endpoints.items())
    config = write_config(tmp_path / "circus.ini", f"[circus]\n{lines}\n\n[watcher:w]\ncmd = /bin/sleep 1000\n")
    result = run_cli(config, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(shared) in result.stderr + result.stdout and option in result.stderr + result.stdout


def test_the_event_and_stats_sockets_take_endpoint_mode_too(tmp_path, daemon_factory):
    directory = tmp_path / "sockets"
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = ipc://{directory}/control.sock
        pubsub_endpoint = ipc://{directory}/events.sock
        stats_endpoint = ipc://{directory}/stats.sock
        endpoint_mode = 0660

        [watcher:w]
        cmd = /bin/sleep 1000
    """)
    daemon = daemon_factory(config)
    started(daemon, 1, timeout=30)
    assert mode(directory) == 0o710
    assert [mode(directory / name) for name in ("control.sock", "events.sock", "stats.sock")] == [0o660] * 3
