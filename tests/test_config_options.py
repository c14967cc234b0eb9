"""The option table and its converters."""

from __future__ import annotations

import resource
import signal

import pytest

from gcircus import options
from gcircus.errors import ConfigError, InvalidValue


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("YES", True), ("On", True), ("1", True),
    ("false", False), ("no", False), ("OFF", False), ("0", False),
])
def test_to_bool(text, expected):
    assert options.to_bool(text) is expected


@pytest.mark.parametrize("text", ["", "maybe", "2", "y"])
def test_to_bool_rejects(text):
    with pytest.raises(ValueError, match=repr(text)):
        options.to_bool(text)


def test_numbers():
    assert options.to_int(" 12 ") == 12
    assert options.to_float("0.5") == 0.5 and options.to_float("3") == 3.0
    with pytest.raises(ValueError, match="expected an integer, got '1.5'"):
        options.to_int("1.5")
    with pytest.raises(ValueError, match="expected a number, got 'x'"):
        options.to_float("x")


def test_to_signal():
    assert options.to_signal("TERM") == signal.SIGTERM
    assert options.to_signal("sigusr1") == signal.SIGUSR1
    assert options.to_signal("9") == 9
    for bad in ("FOO", "SIG", "999", "kill me"):
        with pytest.raises(ValueError, match="unknown signal"):
            options.to_signal(bad)
    with pytest.raises(ValueError) as info:
        options.to_signal("FOO")
    assert str(info.value) == "unknown signal 'FOO'"


def test_to_octal_and_rlimit():
    assert options.to_octal("022") == 0o22 and options.to_octal("0") == 0 and options.to_octal("") is None
    with pytest.raises(ValueError, match="octal"):
        options.to_octal("8")
    assert options.to_rlimit("") == resource.RLIM_INFINITY and options.to_rlimit("64") == 64


def test_to_dotted():
    assert options.to_dotted("a.b.c") == "a.b.c"
    assert options.to_dotted("a.b:c") == "a.b:c"
    for bad in ("a", "a..b", "a.b:c:d", "1a.b", "a b.c", "a.b."):
        with pytest.raises(ValueError, match="dotted path"):
            options.to_dotted(bad)


def test_to_size():
    assert options.to_size("100") == 100
    assert options.to_size("10k") == 10240 and options.to_size("1MB") == 1024**2
    with pytest.raises(ValueError, match="size"):
        options.to_size("ten")


def test_invalid_value_has_short_reason():
    with pytest.raises(InvalidValue) as info:
        options.to_int("abc")
    assert info.value.reason == "expected an integer" and info.value.value == "abc"


def test_suggest():
    assert options.suggest("numprocess", "watcher") == "numprocesses"
    assert options.suggest("NUMPROCESSES", "watcher") == "numprocesses"
    assert options.suggest("endpont", "circus") == "endpoint"
    assert options.suggest("completely_different", "watcher") is None
    assert options.suggest("rlimit_", "watcher") is None


def test_live_options_match_protocol():
    live = set(options.live_options())
    for name in ("numprocesses", "warmup_delay", "working_dir", "uid", "gid", "send_hup", "stop_signal",
                 "stop_children", "shell", "cmd", "args", "graceful_timeout", "max_age",
                 "max_age_variance", "hooks.*", "stdout_stream.*", "stderr_stream.*", "respawn",
                 "max_retry", "close_child_stdin", "close_child_stdout", "close_child_stderr",
                 # gcircus applies these where Circus's `set` silently ignored them
                 "singleton", "copy_env", "rlimit_*", "flapping.*"):
        assert name in live
    assert "priority" not in live and "use_sockets" not in live


def test_get_option_matches_families():
    assert options.get_option("hooks.before_start", "watcher").name == "hooks.*"
    assert options.get_option("rlimit_nofile", "watcher").name == "rlimit_*"
    assert options.get_option("hooks.", "watcher") is None
    assert options.get_option("numprocesses", "watcher").default == 1


def test_reference_markdown_lists_every_option():
    text = options.option_reference_markdown()
    for section, table in options.OPTIONS.items():
        for name in table:
            assert f"| `{name}` |" in text, (section, name)
    assert "| `numprocesses` | int | `1` | yes |" in text


def test_config_error_format():
    err = ConfigError("expected an integer", file="conf/app.ini", section="watcher:web",
                      option="numprocesses", value="abc")
    assert str(err) == "conf/app.ini: [watcher:web] numprocesses = 'abc': expected an integer"
    err = ConfigError("unknown option 'numprocess'", file="conf/app.ini", section="watcher:web",
                      option="numprocess", suggestion="numprocesses")
    assert str(err) == ("conf/app.ini: [watcher:web] unknown option 'numprocess' "
                        "(did you mean 'numprocesses'?)")
