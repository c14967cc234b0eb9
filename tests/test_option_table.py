"""The option table is the one place an option fact lives: the config loader, `set`/`add` and the Watcher
constructor all read it, so they accept, refuse, fold and word things the same way."""
from __future__ import annotations

import re

import pytest

from gcircus import options, runtime_options
from gcircus.config import load_config
from gcircus.errors import ConfigError
from gcircus.streams.sinks import STREAM_CLASSES
from gcircus.watcher import Watcher
from gcircus.watcher_spec import WatcherSpec


def load_watcher(tmp_path, lines: str) -> WatcherSpec:
    path = tmp_path / "app.ini"
    path.write_text(f"[watcher:w]\ncmd = sleep 1000\n{lines}\n")
    return load_config(str(path)).watchers[0]


def config_error(tmp_path, lines: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_watcher(tmp_path, lines)
    return str(info.value)


def test_shipped_stream_classes_are_the_ones_the_table_names():
    assert tuple(STREAM_CLASSES) == options.STREAM_CLASS_NAMES


@pytest.mark.parametrize("name", [n for n, o in options.WATCHER_OPTIONS.items() if o.minimum is not None])
def test_config_set_and_constructor_refuse_a_value_below_the_minimum_with_one_wording(tmp_path, name):
    option = options.WATCHER_OPTIONS[name]
    reason = {0: "must not be negative", -1: "must be -1 (forever) or more"}.get(
        option.minimum, f"must be at least {option.minimum:g}")
    below = int(option.minimum) - 1
    assert reason in config_error(tmp_path, f"{name} = {below}")
    with pytest.raises(ValueError, match=re.escape(reason)):
        Watcher("w", "sleep 1000", **{name: below})
    if option.live:
        with pytest.raises(ValueError, match=re.escape(reason)):
            runtime_options.parse_set(name, below)


@pytest.mark.parametrize("key", ["flapping.window", "flapping.attempts", "flapping.retry_in", "retry_in"])
def test_flapping_minimums_hold_in_the_file_and_at_run_time(tmp_path, key):
    with pytest.raises(ValueError, match="must not be negative"):
        runtime_options.parse_set(key, -1)
    if key.startswith("flapping."):
        assert "must not be negative" in config_error(tmp_path, f"{key} = -1")


def test_what_a_live_change_needs_is_the_tables():
    for name, option in options.WATCHER_OPTIONS.items():
        key = {"rlimit_*": "rlimit_nofile", "hooks.*": "hooks.after_start", "flapping.*": "flapping.window",
               "stdout_stream.*": "stdout_stream.class", "stderr_stream.*": "stderr_stream.class"}.get(name, name)
        assert runtime_options.is_settable(key) == option.live, key
        if option.live:
            assert runtime_options.action_for(key) == option.on_change, key
    assert runtime_options.action_for("env") == options.RESPAWN
    assert runtime_options.action_for("graceful_timeout") == options.NOTHING
    assert runtime_options.action_for("numprocesses") == options.RECOUNT


def test_families_fold_the_same_from_the_file_and_from_add(tmp_path):
    members = {"rlimit_NOFILE": "100", "hooks.after_start": "os.getcwd", "stdout_stream.class": "filestream",
               "stdout_stream.filename": "/tmp/x.log", "flapping.window": "3"}
    spec = load_watcher(tmp_path, "\n".join(f"{key} = {value}" for key, value in members.items()))
    added = runtime_options.watcher_kwargs(members)
    for field in ("rlimits", "hooks", "stdout_stream"):
        assert spec[field] == added[field], field
    assert spec.flapping["window"] == added["flapping"]["window"] == 3.0
    assert spec.rlimits == {"nofile": 100} and spec.hooks == {"after_start": ("os.getcwd", False)}


def test_a_spec_read_from_the_file_builds_the_same_watcher_as_the_constructor(tmp_path):
    spec = load_watcher(tmp_path, "numprocesses = 3\nrlimit_nofile = 64\nmy_plugin_setting = x")
    built = Watcher(**spec)
    assert built.spec == Watcher.from_spec(spec).spec
    assert built.numprocesses == 3 and built.rlimits == {"nofile": 64}
    assert built.options_extra == {"my_plugin_setting": "x"}


def test_the_constructor_refuses_a_misspelt_option_with_the_one_it_meant():
    with pytest.raises(ValueError, match="unknown option 'numprocess' \\(did you mean 'numprocesses'\\?\\)"):
        Watcher("w", "sleep 1000", numprocess=2)
    kept = Watcher("w", "sleep 1000", my_plugin_setting="x")  # far from any option: a free-form one, as in Circus
    assert kept.options_extra == {"my_plugin_setting": "x"}


def test_set_derives_a_new_frozen_spec():
    watcher = Watcher("w", "sleep 1000", numprocesses=2)
    before = watcher.spec
    watcher.set_options({"numprocesses": 4, "rlimit_nofile": 32, "hooks.after_start": "os.getcwd"})
    assert before.numprocesses == 2 and before.rlimits == {}
    assert watcher.spec.numprocesses == 4 and watcher.spec.rlimits == {"nofile": 32}
    assert watcher.hooks_config == {"after_start": ("os.getcwd", False)}
    with pytest.raises(AttributeError):
        watcher.numprocesses = 5  # changes go through a new spec, never by assignment


def test_the_singleton_rule_has_one_wording_everywhere(tmp_path):
    wording = "a singleton watcher runs at most 1 process"
    assert wording in config_error(tmp_path, "singleton = true\nnumprocesses = 2")
    with pytest.raises(ValueError, match=wording):
        Watcher("w", "sleep 1000", singleton=True, numprocesses=2)
    watcher = Watcher("w", "sleep 1000", singleton=True)
    with pytest.raises(ValueError, match=wording):
        watcher.set_options({"numprocesses": 2})


def test_the_copy_env_rule_has_one_wording_everywhere(tmp_path):
    assert "copy_path needs copy_env = true" in config_error(tmp_path, "copy_path = true")
    with pytest.raises(ValueError, match="copy_path needs copy_env = true"):
        Watcher("w", "sleep 1000", copy_path=True)
    watcher = Watcher("w", "sleep 1000", copy_env=True, copy_path=True)
    with pytest.raises(ValueError, match="copy_path needs copy_env = true"):
        watcher.set_options({"copy_env": False})


def test_reloadconfig_applies_exactly_the_circus_keys_the_table_marks():
    applied = {name for name, o in options.CIRCUS_OPTIONS.items() if o.on_change == options.APPLY}
    assert applied == {"check_delay", "warmup_delay", "loglevel", "stop_timeout"}
