"""CURVE on a real gcircusd: listed keys get in on the control, event and stats channels (gcircusctl, listen,
gcircusd-stats, the library clients); a missing or unlisted key is refused, said to the client and logged; channels
without CURVE keep serving plain Circus clients; reloadconfig revokes a removed key, on connections opened before
too; CURVE allows a remote bind."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from gevent import subprocess as gsubprocess
from zmq.utils import z85

from gcircus.client import Client, HandshakeRefused
from gcircus.consumer import Consumer
from gcircus.control.zap import ZapHandler
from gcircus.wire.curve import key_prefix
from gcircus.wire.errors import ACCESS_REFUSED
from tests.support.control import Wire
from tests.support.curve import Keys, start_curve_daemon
from tests.support.daemons import write_config
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.ports import free_port
from tests.support.processes import PYTHON, terminate_child
from tests.support.waiting import wait_for


@pytest.fixture
def keys(tmp_path) -> Keys:
    return Keys.make(tmp_path)


def ctl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*GCIRCUSCTL, *args], capture_output=True, text=True, timeout=60, env=ctl_env(**(env or {})))


def test_gcircusctl_with_a_listed_key_works_and_others_are_refused_and_logged(tmp_path, daemon_factory, keys):
    running = start_curve_daemon(daemon_factory, tmp_path, keys)
    listed = ctl("--endpoint", running.endpoint, *keys.argv("alice"), "list")
    assert listed.returncode == 0 and listed.stdout.split() == ["sleeper"], listed.stderr
    from_env = ctl("--endpoint", running.endpoint, "status", "sleeper", env=keys.env("alice"))
    assert from_env.returncode == 0 and from_env.stdout.strip() == "active", from_env.stderr

    # --timeout is long: the refusals are said as soon as the handshake fails, not after a wait.
    missing = ctl("--endpoint", running.endpoint, "--timeout", "60", "list")
    assert missing.returncode == 1 and "require" in missing.stderr and "--curve-key" in missing.stderr

    unlisted = ctl("--endpoint", running.endpoint, "--timeout", "60", *keys.argv("mallory"), "list")
    assert unlisted.returncode == 1 and "refused this client's CURVE key" in unlisted.stderr
    prefix = key_prefix(keys.public_key("mallory"))
    wait_for(lambda: f"refused CURVE key {prefix} on endpoint {running.endpoint} from 127.0.0.1"
             in running.daemon.output(), message="the refused key in the daemon's log")
    # Its address is named when zmq's report of the connection came before the connection closed.
    refusals = ("refused a client that closed the connection during the handshake", "refused a client without CURVE")
    wait_for(lambda: any(refusal in line and f"on endpoint {running.endpoint} from " in line
                         for line in running.daemon.output().splitlines() for refusal in refusals),
             message="the client without a key in the daemon's log")
    assert f"key {key_prefix(keys.public_key('alice'))}" not in running.daemon.output()


def test_library_client_and_the_wrong_server_key(tmp_path, daemon_factory, keys):
    running = start_curve_daemon(daemon_factory, tmp_path, keys)
    with Client(running.endpoint, timeout=60, **keys.options("alice")) as client:
        assert client.call("list", name="sleeper")["status"] == "ok"
    with Client(running.endpoint, timeout=60) as client, pytest.raises(HandshakeRefused, match="require"):
        client.call("list")
    wrong_server = {"curve_key": keys.secret("alice"), "server_key": os.path.join(keys.root, "mallory", "mallory.key")}
    with Client(running.endpoint, timeout=60, **wrong_server) as client, \
            pytest.raises(HandshakeRefused, match="is --server-key the daemon's public certificate"):
        client.call("list")


def test_listen_receives_events_over_curve_and_refuses_without_a_listed_key(tmp_path, daemon_factory, keys):
    running = start_curve_daemon(daemon_factory, tmp_path, keys)
    out_path = tmp_path / "listen.out"
    with open(out_path, "w") as out:
        listen = gsubprocess.Popen([*GCIRCUSCTL, "--endpoint", running.pubsub, "listen", "watcher.sleeper."],
                                   stdout=out, stderr=gsubprocess.STDOUT, env=ctl_env(**keys.env("alice")))
    try:
        def spawned():  # events before the subscription is live are lost: keep causing some until one is printed
            running.call("incr", name="sleeper", waiting=True)
            running.call("decr", name="sleeper", waiting=True)
            return "watcher.sleeper.spawn: " in out_path.read_text()
        wait_for(spawned, 20, interval=0.05, message="a spawn event printed by listen")
        listen.send_signal(signal.SIGINT)
        assert listen.wait(timeout=20) == 0
    finally:
        terminate_child(listen)
    for name, expected in ((None, "require"), ("mallory", "refused this client's CURVE key")):
        refused = ctl("--endpoint", running.pubsub, "listen", env=keys.env(name) if name else None)
        assert refused.returncode == 1 and expected in refused.stderr, refused.stderr


def test_stats_channel_over_curve_and_gcircusd_stats_with_keys(tmp_path, daemon_factory, keys):
    running = start_curve_daemon(daemon_factory, tmp_path, keys)
    pid = running.call("list", name="sleeper")["pids"][0]
    with Consumer([b"stat.sleeper"], running.stats, green=True, **keys.options("alice")) as consumer:
        topic, body = wait_for(lambda: consumer.recv(0.1), message="a stats message over CURVE")
        assert topic.startswith(b"stat.sleeper") and json.loads(body)
    # gcircusd-stats is a client of the daemon's control and event channels: it needs the keys as well.
    statspoint = f"ipc://{tmp_path}/stats.sock"
    proc = gsubprocess.Popen([PYTHON, "-m", "gcircus.cli.gcircusd_stats", "--endpoint", running.endpoint,
                              "--pubsub", running.pubsub, "--statspoint", statspoint, "--interval", "0.2",
                              *keys.argv("alice")], stdout=gsubprocess.PIPE, stderr=gsubprocess.STDOUT)
    try:
        with Consumer([f"stat.sleeper.{pid}".encode()], statspoint, green=True) as plain:
            assert wait_for(lambda: plain.recv(0.1), 20, message="gcircusd-stats publishing the daemon's pid")
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, output


def test_channels_without_curve_serve_plain_circus_clients(tmp_path, daemon_factory, keys):
    control = f"ipc://{tmp_path}/control.sock"  # an ipc:// endpoint is never a CURVE server: the kernel knows its peers
    running = start_curve_daemon(daemon_factory, tmp_path, keys, endpoint=control)
    wire = Wire(control)  # a bare DEALER, as Circus's client is
    try:
        assert wire.command("list")["watchers"] == ["sleeper"]
    finally:
        wire.close()
    with Consumer([b"watcher."], running.pubsub, green=True):  # the tcp:// event channel still requires CURVE
        wait_for(lambda: f"on pubsub_endpoint {running.pubsub} from " in running.daemon.output(),
                 message="the plain subscriber refused, in the daemon's log")


def test_reloadconfig_revokes_a_removed_key(tmp_path, daemon_factory, keys):
    keys.client("bob", listed=True)
    running = start_curve_daemon(daemon_factory, tmp_path, keys, grants="curve:bob = operate")
    with Client(running.endpoint, timeout=30, **keys.options("bob")) as opened_before:
        assert opened_before.call("list")["status"] == "ok"
        os.unlink(os.path.join(keys.clients, "bob.key"))
        assert running.call("reloadconfig")["status"] == "ok"
        # The connection bob opened before stays open, but each of its requests is refused from now on.
        for command, props in (("list", {}), ("incr", {"name": "sleeper"})):
            reply = opened_before.call(command, **props)
            assert reply["status"] == "error" and reply["errno"] == ACCESS_REFUSED, reply
            assert "CURVE client 'bob'" in reply["reason"] and "no longer in curve_clients" in reply["reason"]
    assert len(running.call("list", name="sleeper")["pids"]) == 1  # the refused incr changed nothing
    refused = ctl("--endpoint", running.endpoint, *keys.argv("bob"), "list")
    assert refused.returncode == 1 and "refused this client's CURVE key" in refused.stderr
    wait_for(lambda: "removed bob" in running.daemon.output(), message="the revocation in the log")
    assert ctl("--endpoint", running.endpoint, *keys.argv("alice"), "list").returncode == 0


def test_curve_allows_a_remote_bind_without_the_opt_in(tmp_path, daemon_factory, keys):
    port = free_port()
    running = start_curve_daemon(daemon_factory, tmp_path, keys, endpoint=f"tcp://0.0.0.0:{port}")
    result = ctl("--endpoint", f"tcp://127.0.0.1:{port}", *keys.argv("alice"), "status", "sleeper")
    assert result.returncode == 0 and result.stdout.strip() == "active", result.stderr
    assert "(CURVE)" in running.daemon.output()


def test_a_non_loopback_bind_without_curve_is_still_refused(tmp_path):
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = tcp://0.0.0.0:{free_port()}

        [watcher:w]
        cmd = sleep 1000
        """)
    result = subprocess.run([PYTHON, "-m", "gcircus.cli.gcircusd", "--check-config", config], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "curve_secret_key" in result.stderr and "allow_remote_endpoints" in result.stderr


def test_zap_handler_lets_null_mechanism_requests_through_and_names_listed_clients(keys):
    alice = keys.public_key("alice")
    handler = ZapHandler(None, {alice: "alice"})
    null = handler.answer([b"1.0", b"7", b"endpoint ipc://x", b"", b"", b"NULL"])
    assert null[2] == b"200" and null[4] == b""
    accepted = handler.answer([b"1.0", b"8", b"endpoint tcp://x", b"127.0.0.1", b"", b"CURVE", z85.decode(alice)])
    assert accepted[:5] == [b"1.0", b"8", b"200", b"OK", b"curve:alice"]
    mallory = z85.decode(keys.public_key("mallory"))
    assert handler.answer([b"1.0", b"9", b"endpoint tcp://x", b"10.0.0.1", b"", b"CURVE", mallory])[2] == b"400"
    assert handler.refusals.count == 1
