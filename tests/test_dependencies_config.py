"""A bad depends_on graph is refused before anything changes: gcircusd's start (exit 2), reloadconfig, add, set; and
rm of a watcher others depend on is refused naming them."""
from __future__ import annotations

import os
import re

from gcircus.client import Client
from tests.support.control import error, ok
from tests.support.daemons import config_with_marker, launch_detached, run_cli, stop_detached, write_config
from tests.support.ports import free_port
from tests.support.waiting import wait_for

CHAIN = """
    [watcher:db]
    cmd = /bin/sleep 1001
    graceful_timeout = 2

    [watcher:app]
    cmd = /bin/sleep 1002
    depends_on = db
    graceful_timeout = 2

    [watcher:web]
    cmd = /bin/sleep 1003
    depends_on = app
    graceful_timeout = 2
    """


def test_a_cycle_makes_gcircusd_exit_2_printing_it_with_file_section_and_option(tmp_path):
    path, marker = config_with_marker(tmp_path, CHAIN.replace("cmd = /bin/sleep 1001", "cmd = /bin/sleep 1001\n"
                                                                                        "    depends_on = web"))
    result = run_cli(path, timeout=60)  # gcircusd refuses the file at once; a loaded machine may start it slowly
    assert result.returncode == 2, result
    assert f"{path}: [watcher:db] depends_on = 'web': dependency cycle: db -> web -> app -> db" in result.stderr
    assert not os.path.exists(marker)


def test_a_watcher_depending_on_itself_is_a_cycle_at_load(tmp_path):
    path, marker = config_with_marker(tmp_path, """
        [watcher:solo]
        cmd = /bin/sleep 1000
        depends_on = solo
        """)
    result = run_cli(path, timeout=60)  # gcircusd refuses the file at once; a loaded machine may start it slowly
    assert result.returncode == 2
    assert "[watcher:solo] depends_on = 'solo': dependency cycle: solo -> solo" in result.stderr
    assert not os.path.exists(marker)


def test_an_unknown_name_makes_gcircusd_exit_2_with_a_suggestion(tmp_path):
    path, marker = config_with_marker(tmp_path, CHAIN.replace("depends_on = db", "depends_on = dbb"))
    result = run_cli(path, timeout=60)  # gcircusd refuses the file at once; a loaded machine may start it slowly
    assert result.returncode == 2
    assert (f"{path}: [watcher:app] depends_on = 'dbb': depends on 'dbb', which is no watcher (did you mean 'db'?)"
            in result.stderr)
    assert not os.path.exists(marker)


def test_reloadconfig_of_a_file_introducing_a_cycle_is_an_error_and_changes_nothing(setup):
    setup.start(CHAIN, {"db": 1, "app": 1, "web": 1})
    before = {name: setup.pids(name) for name in ("db", "app", "web")}
    setup.write(CHAIN.replace("cmd = /bin/sleep 1001", "cmd = /bin/sleep 1004\n    depends_on = web"))
    for waiting in (False, True):
        reason = error(setup.call("reloadconfig", waiting=waiting), 3)
        assert "[watcher:db] depends_on = 'web': dependency cycle: db -> web -> app -> db" in reason
        assert str(setup.path) in reason
    assert {name: setup.pids(name) for name in ("db", "app", "web")} == before
    setup.write(CHAIN)
    assert ok(setup.call("reloadconfig", waiting=True))["plan"]["watchers"]["unchanged"] == ["app", "db", "web"]


def test_reloadconfig_refuses_to_remove_what_a_watcher_added_at_run_time_depends_on(setup):
    setup.start(CHAIN, {"db": 1, "app": 1, "web": 1})
    ok(setup.call("add", name="extra", cmd="/bin/sleep 1005", options={"depends_on": "web"}))
    setup.write(CHAIN.split("[watcher:web]")[0])
    reason = error(setup.call("reloadconfig", waiting=True), 3)
    assert "watcher 'extra': depends on 'web', which is no watcher" in reason and "nothing was changed" in reason
    assert setup.watchers() == ["app", "db", "extra", "web"] and len(setup.pids("web")) == 1


def test_add_refuses_an_unknown_dependency_and_a_cycle_is_impossible_through_set(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "db", "cmd": "/bin/sleep 1001"})
    reason = error(client.call("add", name="app", cmd="/bin/sleep 1002", options={"depends_on": "dbx"}), 3)
    assert reason == "watcher 'app': depends on 'dbx', which is no watcher (did you mean 'db'?)"
    assert [w.name for w in arbiter.watchers] == ["db"]
    ok(client.call("add", name="app", cmd="/bin/sleep 1002", options={"depends_on": "db"}))
    assert [w.name for w in arbiter.dependencies_of("app")] == ["db"]
    reason = error(client.call("set", name="db", options={"depends_on": "app"}), 3)
    assert reason == "dependency cycle: db -> app -> db"
    assert arbiter.get_watcher("db").depends_on == ()
    reason = error(client.call("set", name="db", options={"depends_on": "db"}), 3)
    assert reason == "dependency cycle: db -> db"


def test_rm_of_a_watcher_others_depend_on_is_refused_naming_them(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "db", "cmd": "/bin/sleep 1001"},
                                      {"name": "app", "cmd": "/bin/sleep 1002", "depends_on": "db"},
                                      {"name": "worker", "cmd": "/bin/sleep 1003", "depends_on": ["db"]})
    reason = error(client.call("rm", name="db", waiting=True), 3)
    assert reason == "cannot remove db: worker, app depend on it (depends_on); remove them first"
    assert len(arbiter.get_watcher("db").pids) == 1
    ok(client.call("rm", name="worker", waiting=True))
    ok(client.call("rm", name="app", waiting=True))
    ok(client.call("rm", name="db", waiting=True))
    assert arbiter.watchers == []


def test_daemon_whose_watcher_waits_for_a_watcher_nothing_starts_warns_and_goes_on_once_it_is_started(tmp_path):
    pidfile = tmp_path / "gcircusd.pid"
    log = tmp_path / "gcircusd.log"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = {endpoint}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}

        [watcher:db]
        cmd = /bin/sleep 1001
        autostart = false

        [watcher:web]
        cmd = /bin/sleep 1002
        depends_on = db
        """)
    result = launch_detached("--pidfile", str(pidfile), "--log-output", str(log), config)  # does not hang
    pid = int(re.search(r"starting \(pid (\d+)", log.read_text()).group(1))
    client = Client(endpoint, timeout=10)
    try:
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert "watcher 'web' is waiting for 'db' (stopped)" in result.stderr
        assert client.call("status", name="web")["status"] == "starting"
        assert client.call("list", name="web")["pids"] == []
        ok(client.call("start", name="db", waiting=True))
        wait_for(lambda: client.call("status", name="web")["status"] == "active", 20, message="web active")
    finally:
        client.close()
        stop_detached(pid)
