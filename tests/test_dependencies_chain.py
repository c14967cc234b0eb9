"""A chain of three real watchers (db <- app <- web, `sleep` children) under start, stop and reloadconfig: the
order they reach active and stopped in, read from the events the arbiter publishes, and what the control commands
do along the graph only when asked (--with-dependencies, --with-dependents)."""
from __future__ import annotations

import socket

import pytest
from gevent import subprocess as gsubprocess

from gcircus.client import CallError
from gcircus.client import Client as GClient
from gcircus.daemon import Arbiter
from tests.support.control import Client, error, ok
from tests.support.daemons import circus_config, write_config
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.ports import free_port
from tests.support.recorders import ArbiterRecorder
from tests.support.waiting import wait_for

# Registered db first: without depends_on, equal priorities would start web first (the last registered).
CHAIN = ({"name": "db", "cmd": "/bin/sleep 1001"},
         {"name": "app", "cmd": "/bin/sleep 1002", "depends_on": ["db"]},
         {"name": "web", "cmd": "/bin/sleep 1003", "depends_on": ["app"]})
NAMES = ("db", "app", "web")


def order_of(recorder: ArbiterRecorder, event: str, since: int = 0) -> list[str]:
    """The watchers of the chain in the order they published `event` (start: active; stop: stopped)."""
    return [t.split(".")[1] for t, _ in recorder.events[since:] if t.endswith(f".{event}") and
            t.split(".")[1] in NAMES]


def statuses(client) -> dict[str, str]:
    return {name: client.call("status", name=name)["status"] for name in NAMES}  # the status field is the state


@pytest.fixture
def chain(make_arbiter):
    arbiter, client, recorder = make_arbiter(*CHAIN)
    return arbiter, client, recorder


def test_the_arbiter_starts_the_chain_in_dependency_order_and_stops_it_in_reverse(chain):
    arbiter, client, recorder = chain
    assert order_of(recorder, "start") == ["db", "app", "web"]
    assert order_of(recorder, "spawn") == ["db", "app", "web"]
    assert [w.name for w in arbiter.iter_watchers()] == ["db", "app", "web"]
    mark = len(recorder.events)
    ok(client.call("stop", waiting=True, timeout=30))
    assert order_of(recorder, "stop", mark) == ["web", "app", "db"]
    assert statuses(client) == dict.fromkeys(NAMES, "stopped")


def test_plain_start_of_a_watcher_whose_dependency_is_stopped_is_an_error_naming_it(chain):
    arbiter, client, recorder = chain
    ok(client.call("stop", waiting=True, timeout=30))
    reason = error(client.call("start", name="web", waiting=True), 3)
    assert reason == ("cannot start web: it depends on app (app is stopped); start it first, or use "
                      "start --with-dependencies")
    assert statuses(client) == dict.fromkeys(NAMES, "stopped")


def test_start_with_dependencies_brings_the_chain_up_in_order(chain):
    arbiter, client, recorder = chain
    ok(client.call("stop", waiting=True, timeout=30))
    mark = len(recorder.events)
    reply = ok(client.call("start", name="web", with_dependencies=True, waiting=True, timeout=30))
    assert reply["info"]["started"] == arbiter.get_watcher("web").pids
    assert order_of(recorder, "start", mark) == ["db", "app", "web"]
    assert statuses(client) == dict.fromkeys(NAMES, "active")


def test_start_with_dependencies_leaves_active_dependencies_alone(chain):
    arbiter, client, recorder = chain
    db_pids = arbiter.get_watcher("db").pids
    ok(client.call("stop", name="app", waiting=True, timeout=30))
    ok(client.call("stop", name="web", waiting=True, timeout=30))
    mark = len(recorder.events)
    ok(client.call("start", name="web", with_dependencies=True, waiting=True, timeout=30))
    assert order_of(recorder, "start", mark) == ["app", "web"]
    assert arbiter.get_watcher("db").pids == db_pids


def test_start_with_dependencies_stops_at_a_dependency_that_fails_naming_it_and_the_cause(make_arbiter):
    arbiter, client, recorder = make_arbiter(
        {"name": "db", "cmd": "/nonexistent/db-server", "max_retry": 1, "autostart": False},
        *[{**spec, "autostart": False} for spec in CHAIN[1:]])
    reason = error(client.call("start", name="web", with_dependencies=True, waiting=True, timeout=30), 3)
    assert reason.startswith("watcher 'db' failed: ") and reason.endswith("; app was not started")
    assert "/nonexistent/db-server" in reason
    assert statuses(client) == {"db": "failed", "app": "stopped", "web": "stopped"}


def test_stop_with_dependents_stops_the_chain_last_started_first(chain):
    arbiter, client, recorder = chain
    mark = len(recorder.events)
    ok(client.call("stop", name="db", with_dependents=True, waiting=True, timeout=30))
    assert order_of(recorder, "stop", mark) == ["web", "app", "db"]
    assert statuses(client) == dict.fromkeys(NAMES, "stopped")


def test_restart_with_dependents_stops_them_first_and_starts_them_again_after(chain):
    arbiter, client, recorder = chain
    mark = len(recorder.events)
    reply = ok(client.call("restart", name="db", with_dependents=True, waiting=True, timeout=30))
    assert reply["info"]["started"] == arbiter.get_watcher("db").pids
    assert order_of(recorder, "stop", mark) == ["web", "app", "db"]
    assert order_of(recorder, "start", mark) == ["db", "app", "web"]
    assert statuses(client) == dict.fromkeys(NAMES, "active")


def test_restart_with_dependents_leaves_a_stopped_dependent_stopped(chain):
    arbiter, client, recorder = chain
    ok(client.call("stop", name="web", waiting=True, timeout=30))
    ok(client.call("restart", name="db", with_dependents=True, waiting=True, timeout=30))
    assert statuses(client) == {"db": "active", "app": "active", "web": "stopped"}


def test_plain_restart_of_a_watcher_whose_dependency_is_stopped_is_an_error(chain):
    arbiter, client, recorder = chain
    ok(client.call("stop", name="db", waiting=True, timeout=30))
    reason = error(client.call("restart", name="app", waiting=True), 3)
    assert reason.startswith("cannot restart app: it depends on db (db is stopped)")
    assert statuses(client) == {"db": "stopped", "app": "active", "web": "active"}


def test_plain_stop_stops_only_the_named_watcher(chain):
    arbiter, client, recorder = chain
    ok(client.call("stop", name="db", waiting=True, timeout=30))
    assert statuses(client) == {"db": "stopped", "app": "active", "web": "active"}


def test_start_of_several_watchers_needs_only_the_dependencies_outside_them(chain):
    arbiter, client, recorder = chain
    ok(client.call("stop", waiting=True, timeout=30))
    reason = error(client.call("start", name="[aw]*", waiting=True), 3)
    assert reason.startswith("cannot start app: it depends on db (db is stopped)")
    mark = len(recorder.events)
    ok(client.call("start", name="*", waiting=True, timeout=30))
    wait_for(lambda: statuses(client) == dict.fromkeys(NAMES, "active"), 20, message="the chain active")
    assert sorted(order_of(recorder, "start", mark)) == sorted(NAMES)


def chain_ini(endpoint: str, watchers: str) -> str:
    return f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n\n" + watchers


CHAIN_INI = """
[watcher:other]
cmd = /bin/sleep 1000

[watcher:web]
cmd = /bin/sleep 1003
depends_on = app
priority = 50

[watcher:app]
cmd = /bin/sleep 1002
depends_on = db

[watcher:db]
cmd = /bin/sleep 1001
"""


@pytest.fixture
def loaded(tmp_path):
    """An arbiter (the daemon's class) loaded from a file holding only `other`, started; (arbiter, path, recorder)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    path = write_config(tmp_path / "circus.ini", chain_ini(endpoint, CHAIN_INI.split("[watcher:web]")[0]))
    arbiter = Arbiter.load_from_config(path)
    recorder = ArbiterRecorder(arbiter)
    arbiter.start(background=True)
    client = Client(endpoint)
    yield arbiter, path, recorder, client, endpoint
    client.close()
    arbiter.stop(graceful=False)
    arbiter.wait_channels_closed(5)


def test_reloadconfig_adds_a_chain_in_dependency_order_and_removes_it_in_reverse(loaded, tmp_path):
    arbiter, path, recorder, client, endpoint = loaded
    write_config(tmp_path / "circus.ini", chain_ini(endpoint, CHAIN_INI))
    mark = len(recorder.events)
    reply = ok(client.call("reloadconfig", waiting=True, timeout=30))
    assert reply["plan"]["watchers"]["added"] == ["app", "db", "web"]
    assert order_of(recorder, "start", mark) == ["db", "app", "web"]
    assert statuses(client) == dict.fromkeys(NAMES, "active")

    write_config(tmp_path / "circus.ini", chain_ini(endpoint, CHAIN_INI.split("[watcher:web]")[0]))
    mark = len(recorder.events)
    reply = ok(client.call("reloadconfig", waiting=True, timeout=30))
    assert reply["plan"]["watchers"]["removed"] == ["app", "db", "web"]
    assert order_of(recorder, "stop", mark) == ["web", "app", "db"]
    assert [w.name for w in arbiter.watchers] == ["other"]


def test_gcircusctl_follows_the_chain_of_a_real_gcircusd_only_when_asked(setup):
    setup.start(CHAIN_INI, {"db": 1, "app": 1, "web": 1, "other": 1})

    def ctl(*argv: str) -> gsubprocess.CompletedProcess:
        return gsubprocess.run(GCIRCUSCTL + ["--endpoint", setup.endpoint, *argv], stdout=gsubprocess.PIPE,
                               stderr=gsubprocess.PIPE, text=True, timeout=30, env=ctl_env())

    assert ctl("stop", "db", "--with-dependents", "--waiting").returncode == 0
    assert statuses(setup) == dict.fromkeys(NAMES, "stopped")
    refused = ctl("start", "web", "--waiting")
    assert refused.returncode == 3
    assert "cannot start web: it depends on app (app is stopped)" in refused.stdout + refused.stderr
    assert ctl("start", "web", "--with-dependencies", "--waiting").returncode == 0
    assert statuses(setup) == dict.fromkeys(NAMES, "active")
    assert ctl("restart", "app", "--with-dependents", "--waiting").returncode == 0
    assert statuses(setup) == dict.fromkeys(NAMES, "active")
    usage = ctl("start", "--frobnicate").stderr
    assert "usage: start [NAME] [--waiting] [--match simple|glob|regex] [--with-dependencies]" in usage


def test_reloadconfig_replaces_a_watcher_after_adding_the_dependency_its_new_version_names(loaded, tmp_path):
    arbiter, path, recorder, client, endpoint = loaded

    def write(other: str, more: str = "") -> None:
        text = f"[watcher:other]\ncmd = /bin/sleep 1000\n{other}\n[watcher:db]\ncmd = /bin/sleep 1001\n{more}"
        write_config(tmp_path / "circus.ini", chain_ini(endpoint, text))

    write("depends_on = db\n")
    reply = ok(client.call("reloadconfig", waiting=True, timeout=30))
    assert reply["plan"]["watchers"]["added"] == ["db"]
    assert reply["plan"]["watchers"]["reloaded"] == {"other": ["depends_on"]}  # settable: the processes stay
    assert [w.name for w in arbiter.dependencies_of("other")] == ["db"]

    # use_sockets cannot change live: `other` is replaced, and its new version depends on the new `cache`.
    write("use_sockets = true\ndepends_on = cache\n", "\n[watcher:cache]\ncmd = /bin/sleep 1011\n")
    mark = len(recorder.events)
    reply = ok(client.call("reloadconfig", waiting=True, timeout=30))
    assert reply["plan"]["watchers"]["added"] == ["cache"] and "other" in reply["plan"]["watchers"]["replaced"]
    assert [t.split(".")[1] for t, _ in recorder.events[mark:] if t.endswith(".start")] == ["cache", "other"]
    assert [w.name for w in arbiter.dependencies_of("other")] == ["cache"]
    assert {w.name: w.status() for w in arbiter.watchers} == dict.fromkeys(("db", "cache", "other"), "active")


def test_gcircusd_starts_a_dependent_only_once_its_dependency_is_ready(tmp_path, daemon_factory):
    go = tmp_path / "go"
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:db]
        cmd = sh -c 'while [ ! -e {go} ]; do sleep 0.05; done; echo >&3; exec sleep 1001'
        ready = fd:3
        graceful_timeout = 2

        [watcher:app]
        cmd = /bin/sleep 1002
        depends_on = db
        graceful_timeout = 2

        [watcher:web]
        cmd = /bin/sleep 1003
        depends_on = app
        graceful_timeout = 2
        """)
    daemon_factory(config)
    client = GClient(endpoint, timeout=5)
    try:
        def answering_with_db_spawned():
            try:
                return client.call("status", name="db")["status"] == "starting" and len(
                    client.call("list", name="db")["pids"]) == 1
            except CallError:
                return False
        wait_for(answering_with_db_spawned, 20, message="db spawned, not ready")
        assert client.call("list", name="app")["pids"] == [] and client.call("list", name="web")["pids"] == []
        assert statuses(client)["app"] != "active" and statuses(client)["web"] != "active"

        go.touch()
        wait_for(lambda: statuses(client) == dict.fromkeys(NAMES, "active"), 20, message="the chain active")
        ok(client.call("stop", waiting=True, timeout=30))
        go.unlink()
        ok(client.call("start", name="web", with_dependencies=True))  # in the background: the reply comes at once
        wait_for(lambda: client.call("status", name="db")["status"] == "starting", 20, message="db starting")
        assert client.call("list", name="app")["pids"] == []
        go.touch()
        wait_for(lambda: statuses(client) == dict.fromkeys(NAMES, "active"), 20, message="the chain active again")
    finally:
        client.close()


def test_plain_start_of_a_dependent_of_an_armed_on_demand_watcher_waits_for_its_first_connection(make_arbiter):
    arbiter, client, recorder = make_arbiter(
        {"name": "db", "cmd": "/bin/sleep 1001", "on_demand": True, "use_sockets": True},
        {"name": "app", "cmd": "/bin/sleep 1002", "depends_on": ["db"], "autostart": False},
        sockets=[{"name": "db", "host": "127.0.0.1", "port": 0}])
    ok(client.call("start", name="app"))  # not refused: a connection starts db
    wait_for(lambda: arbiter.get_watcher("app").status() == "starting", message="app waiting for db")
    assert arbiter.get_watcher("db").status() == "stopped" and arbiter.get_watcher("app").pids == []
    db_socket = arbiter.get_socket("db")
    with socket.create_connection((db_socket.host, db_socket.port), timeout=5):
        wait_for(lambda: arbiter.get_watcher("app").status() == "active", 20, message="app active after db")
    assert order_of(recorder, "start") == ["db", "app"]
