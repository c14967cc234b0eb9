"""PluginManager: config errors at construction, native plugins restarted with back-off after crashes without
touching the watchers, inactive plugins idle, Circus's class names mapped to the built-ins."""
from __future__ import annotations

import time

import pytest

from gcircus.daemon import Arbiter
from gcircus.events import res_name
from gcircus.plugins import NativePlugin, PluginManager
from gcircus.plugins.statsd import StatsdEmitter
from tests.support.plugins import plugin, supervised
from tests.support.waiting import wait_for

SLEEPER = {"cmd": "/bin/sleep 1000", "graceful_timeout": 5}


class CrashingPlugin(NativePlugin):
    """Records each start, then crashes on its first timer round."""

    loop_rate = 0.01
    starts: list[float] = []
    stops: list[float] = []
    inits = 0

    def handle_init(self):
        CrashingPlugin.starts.append(time.monotonic())

    def look_after(self):
        raise RuntimeError("boom")

    def handle_stop(self):
        CrashingPlugin.stops.append(time.monotonic())


class IdlePlugin(NativePlugin):
    inits = 0

    def handle_init(self):
        IdlePlugin.inits += 1


class NotAPlugin:
    pass


@pytest.mark.parametrize("use, expected", [
    ("tests.no_such_module.Plugin", "cannot import"),
    ("tests.test_plugins_manager.Missing", "cannot import"),
    ("tests.test_plugins_manager.NotAPlugin", "not a plugin class"),
])
def test_a_plugin_that_cannot_be_used_is_a_value_error_naming_it(use, expected):
    with pytest.raises(ValueError, match=expected) as info:
        PluginManager(Arbiter([]), [plugin("broken", use)], None, None)
    assert "plugin:broken" in str(info.value)


def test_bad_built_in_options_are_a_value_error_naming_the_plugin():
    with pytest.raises(ValueError, match="plugin:rw.*watcher"):
        PluginManager(Arbiter([]), [plugin("rw", "circus.plugins.resource_watcher.ResourceWatcher")], None, None)
    with pytest.raises(ValueError, match="plugin:s.*port"):
        PluginManager(Arbiter([]), [plugin("s", "circus.plugins.statsd.StatsdEmitter", port="eighty")], None, None)


def test_an_external_plugin_needs_the_channels():
    with pytest.raises(ValueError, match="plugin:ext.*endpoint"):
        PluginManager(Arbiter([]), [plugin("ext", "gcircus.plugins.CircusPlugin")], None, None)


def test_circus_class_names_map_to_native_built_ins_and_colon_paths_work():
    manager = PluginManager(Arbiter([]), [plugin("a", "circus.plugins._statsd.StatsdEmitter"),
                                          plugin("b", "circus.plugins.statsd:StatsdEmitter")], None, None)
    assert all(type(r.plugin) is StatsdEmitter for r in manager.native.values())
    assert manager.external == []
    assert (manager.restart_delay, manager.max_restart_delay) == (1.0, 60.0)


def test_a_crashing_native_plugin_is_restarted_with_doubling_delays_and_watchers_are_untouched(caplog):
    CrashingPlugin.starts.clear()
    CrashingPlugin.stops.clear()
    plugins = [plugin("crash", "tests.test_plugins_manager.CrashingPlugin")]
    with supervised([{"name": "w", **SLEEPER}], plugins, restart_delay=0.1, max_restart_delay=0.4) as (arb, mgr):
        pid = arb.get_watcher("w").pids[0]
        wait_for(lambda: len(CrashingPlugin.starts) >= 5, timeout=30, message="five starts")
        # The delays chosen are logged with each crash (a loaded machine only makes the measured gaps longer).
        delays = [r.args[1] for r in caplog.records if r.msg.startswith("plugin %s crashed")]
        assert delays[:4] == [0.1, 0.2, 0.4, 0.4]  # capped at max_restart_delay, not doubled again
        gaps = [b - a for a, b in zip(CrashingPlugin.starts, CrashingPlugin.starts[1:])]
        assert all(gap >= delay for gap, delay in zip(gaps, delays))
        assert len(CrashingPlugin.stops) >= 4  # handle_stop ran after each crash
        assert mgr.native["plugin:crash"].crashes >= 4
        watcher = arb.get_watcher("w")
        assert watcher.status() == "active" and watcher.pids == [pid]


def test_an_inactive_native_plugin_stays_idle_and_stops_on_request():
    IdlePlugin.inits = 0
    plugins = [{**plugin("idle", "tests.test_plugins_manager.IdlePlugin"), "active": False}]
    with supervised([{"name": "w", **SLEEPER}], plugins) as (arb, mgr):
        arb.get_watcher("w").restart()
        assert mgr.statuses() == {"plugin:idle": "running"}
        assert IdlePlugin.inits == 0
    assert mgr.statuses() == {"plugin:idle": "stopped"}


def test_native_plugin_sees_events_through_the_arbiter_and_unsubscribes_when_stopped():
    seen: list = []

    class Recorder(NativePlugin):
        def handle_event(self, event):
            seen.append((res_name(event.watcher), event.name, event.fields.get("process_pid")))

    arbiter = Arbiter([])
    manager = PluginManager(arbiter, [], None, None)
    from gcircus.plugins.manager import NativeRunner

    manager.native["plugin:rec"] = NativeRunner(manager, "plugin:rec", Recorder, {})
    manager.start()
    try:
        arbiter.start(background=True)
        watcher = arbiter.add_watcher("a.b c", "/bin/sleep 1000", start=True, graceful_timeout=5)
        wait_for(lambda: ("a.b_c", "spawn", watcher.pids[0]) in seen, message="spawn with a dotted name")
        assert ("a.b_c", "add", None) in seen
    finally:
        manager.stop()
        assert arbiter._listeners == []
        arbiter.stop(graceful=False)
