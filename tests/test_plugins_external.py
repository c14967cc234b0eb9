"""External plugins run by gcircus-plugin: a plugin written for Circus (Circus's own base class, Tornado loop) runs
unchanged against a real gcircusd, and a gcircus CircusPlugin runs on gevent as a `plugin:NAME` watcher."""
from __future__ import annotations

import json
import os
import signal
import sys

from circus.plugins import CircusPlugin as TornadoCircusPlugin

from gcircus.client import Client
from gcircus.plugins import CircusPlugin
from tests.support.daemons import write_config
from tests.support.plugins import plugin, supervised
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(path: str, *fields) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(fields) + "\n")


def _records(path: str) -> list:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


class RecorderMixin:
    """Writes init/stop, every event, and the `list` reply it gets on each spawn into the `output` file."""

    def handle_init(self):
        _record(self.config["output"], "init", self.config.get("note"))

    def handle_recv(self, data):
        watcher, action, msg = self.split_data(data)
        _record(self.config["output"], "event", watcher, action, self.load_message(msg))
        if action == "spawn":
            _record(self.config["output"], "list", self.call("list")["watchers"])

    def handle_stop(self):
        _record(self.config["output"], "stop")


class CircusRecorder(RecorderMixin, TornadoCircusPlugin):
    """A plugin as written for Circus 0.19: Circus's class, untouched."""


class GeventRecorder(RecorderMixin, CircusPlugin):
    """The same plugin on gcircus's gevent base class."""


def _spawn_seen(path: str, worker: str = "worker") -> bool:
    """The plugin saw a spawn of `worker` and recorded the `list` reply it asked for then."""
    records = _records(path)
    spawns = [i for i, r in enumerate(records) if r[0] == "event" and r[1:3] == [worker, "spawn"]]
    return bool(spawns) and any(r[0] == "list" for r in records[spawns[0]:])


def _incr_until_seen(endpoint: str, path: str) -> None:
    """Subscriptions take a moment to reach the publisher: add processes until the plugin reports one."""
    with Client(endpoint, timeout=5) as client:
        for _ in range(40):  # ~40 s at most: a loaded machine may take seconds to connect the plugin's SUB socket
            client.call("incr", name="worker", waiting=True)
            try:
                wait_for(lambda: _spawn_seen(path), timeout=1, message="spawn seen by the plugin")
                return
            except AssertionError:
                continue
    raise AssertionError("the plugin never saw a spawn")


def test_a_circus_plugin_class_runs_unchanged_under_gcircus_plugin_against_gcircusd(tmp_path, daemon_factory):
    endpoint, pubsub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    output = str(tmp_path / "records")
    runner = f"{sys.executable} -m gcircus.cli.gcircus_plugin --endpoint {endpoint} --pubsub {pubsub}"
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = {endpoint}
        pubsub_endpoint = {pubsub}

        [watcher:worker]
        cmd = /bin/sleep 1000
        graceful_timeout = 5

        [watcher:plugin:rec]
        cmd = {runner} --config output:{output} tests.test_plugins_external.CircusRecorder
        working_dir = {REPO}
        copy_env = true
        copy_path = true
        graceful_timeout = 5
        """)
    daemon = daemon_factory(config)
    wait_for(lambda: ["init", None] in _records(output), timeout=10, message="plugin started")
    _incr_until_seen(endpoint, output)
    lists = [r[1] for r in _records(output) if r[0] == "list"]
    assert lists and "worker" in lists[0] and "plugin:rec" in lists[0]
    assert daemon.stop() == 0
    # Circus's own base class (Tornado) may still deliver an event already received when handle_stop runs.
    assert ["stop"] in _records(output)


def test_a_gevent_circus_plugin_runs_as_a_plugin_watcher_and_an_inactive_one_idles(tmp_path):
    endpoint, pubsub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    output, idle_output = str(tmp_path / "records"), str(tmp_path / "idle")
    plugins = [plugin("rec", "tests.test_plugins_external.GeventRecorder", output=output, note="two words"),
               {**plugin("idle", "tests.test_plugins_external.GeventRecorder", output=idle_output),
                "active": False}]
    watchers = [{"name": "worker", "cmd": "/bin/sleep 1000", "graceful_timeout": 5}]
    options = {"endpoint": endpoint, "pubsub_endpoint": pubsub}
    with supervised(watchers, plugins, arbiter_options=options) as (arbiter, manager):
        rec, idle = arbiter.get_watcher("plugin:rec"), arbiter.get_watcher("plugin:idle")
        idle_pid = idle.pids[0]
        assert rec.singleton and rec.copy_env and rec.copy_path and rec.priority == 1
        assert rec.args[rec.args.index("--check-delay") + 1] == "0.1"  # the arbiter's, not a fixed 5
        wait_for(lambda: ["init", "two words"] in _records(output), timeout=10, message="plugin started")
        _incr_until_seen(endpoint, output)
        lists = [r[1] for r in _records(output) if r[0] == "list"]
        assert lists and set(lists[0]) >= {"worker", "plugin:rec", "plugin:idle"}
        assert idle.pids == [idle_pid] and alive(idle_pid)  # neither exited nor respawned
        assert _records(idle_output) == []
        rec_pid = rec.pids[0]
    assert not alive(rec_pid) and not alive(idle_pid)
    assert _records(output)[-1] == ["stop"]


def test_gcircus_plugin_cli_refuses_a_native_plugin_and_an_unknown_class():
    from gcircus.cli.gcircus_plugin import main

    assert main(["circus.plugins.statsd.StatsdEmitter"]) == 2
    assert main(["no.such.Plugin"]) == 2


def test_inactive_circus_plugin_class_idles_under_gcircus_plugin_instead_of_exiting(tmp_path):
    from gevent import subprocess as gsubprocess

    output, log = str(tmp_path / "records"), tmp_path / "plugin.log"
    proc = gsubprocess.Popen([sys.executable, "-m", "gcircus.cli.gcircus_plugin", "--log-output", str(log),
                              "--config", f"output:{output}:::active:false",
                              "tests.test_plugins_external.CircusRecorder"], cwd=REPO)
    try:
        # The idle state is announced once the stop signals are blocked for sigwait: no start-up time is guessed.
        wait_for(lambda: proc.poll() is not None or (log.exists() and "idle until stopped" in log.read_text()),
                 timeout=60, message="the plugin reporting that it idles")
        assert proc.poll() is None and _records(output) == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
