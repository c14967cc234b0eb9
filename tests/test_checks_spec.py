"""The `ready` and `health` options: which check forms parse, the exact words a bad one is refused with (directly,
through the option table and from a config file), and how placeholders are filled before a check runs."""
from __future__ import annotations

import textwrap

import pytest

from gcircus.checks.spec import Check, fill_placeholders, parse_check, split_host_port
from gcircus.config import load_config
from gcircus.errors import ConfigError, InvalidValue
from gcircus.options import WATCHER_OPTIONS

READY_FORMS = "none, notify, fd:N, tcp:HOST:PORT, http:URL or exec:COMMAND"


@pytest.mark.parametrize("text, kind, argument", [
    ("none", "none", ""),
    ("", "none", ""),
    ("notify", "notify", ""),
    ("NOTIFY", "notify", ""),
    ("fd:3", "fd", "3"),
    ("fd:42", "fd", "42"),
    ("tcp:127.0.0.1:8000", "tcp", "127.0.0.1:8000"),
    ("tcp:localhost:80", "tcp", "localhost:80"),
    ("tcp:[::1]:80", "tcp", "[::1]:80"),
    ("tcp:127.0.0.1:$PORT", "tcp", "127.0.0.1:$PORT"),
    ("tcp:127.0.0.1:80$(circus.wid)", "tcp", "127.0.0.1:80$(circus.wid)"),
    ("http:http://127.0.0.1:8000/health", "http", "http://127.0.0.1:8000/health"),
    ("http://127.0.0.1:8000/health?full=1", "http", "http://127.0.0.1:8000/health?full=1"),
    ("http://[::1]:8000/", "http", "http://[::1]:8000/"),
    ("exec:curl -fs http://127.0.0.1/", "exec", "curl -fs http://127.0.0.1/"),
    ("exec: test -e '/tmp/a b' ", "exec", "test -e '/tmp/a b'"),
])
def test_accepted_forms(text, kind, argument):
    check = parse_check(text)
    assert (check.kind, check.argument) == (kind, argument)
    assert check.text == text.strip() or (text == "" and check.text == "none")


def test_check_properties():
    assert parse_check("fd:5").fd == 5
    assert parse_check("tcp:h:1").fd is None
    assert [parse_check(t).probed for t in ("none", "notify", "fd:3", "tcp:h:1", "http://h/", "exec:true")] == [
        False, False, False, True, True, True]
    assert str(parse_check(" tcp:h:1 ")) == "tcp:h:1"
    assert parse_check(parse_check("fd:3")) == Check("fd", "3", "fd:3")


def test_watchdog_is_a_health_check_only():
    assert parse_check("watchdog", health=True).kind == "watchdog"
    assert parse_check("tcp:h:1", health=True).kind == "tcp"
    with pytest.raises(InvalidValue) as info:
        parse_check("watchdog")
    assert str(info.value) == f"watchdog is a health check only (ready is one of {READY_FORMS}), got 'watchdog'"


@pytest.mark.parametrize("text, reason", [
    ("bogus", f"unknown check (expected {READY_FORMS})"),
    ("none:x", f"unknown check (expected {READY_FORMS})"),
    ("fd:2", "fd:N needs a descriptor number N of at least 3 (0, 1 and 2 are the child's stdin, stdout and stderr)"),
    ("fd:x", "fd:N needs a descriptor number N of at least 3 (0, 1 and 2 are the child's stdin, stdout and stderr)"),
    ("fd", "fd:N needs a descriptor number N of at least 3 (0, 1 and 2 are the child's stdin, stdout and stderr)"),
    ("tcp:host", "expected HOST:PORT, as in 127.0.0.1:8000 (an IPv6 address in brackets: [::1]:8000)"),
    ("tcp:", "tcp: needs HOST:PORT"),
    ("tcp:host:http", "port 'http' is not a number from 1 to 65535"),
    ("tcp:host:0", "port '0' is not a number from 1 to 65535"),
    ("tcp:host:65536", "port '65536' is not a number from 1 to 65535"),
    ("tcp:::1:80", "an IPv6 address goes in brackets, as in [::1]:80"),
    ("tcp:$HOST", "expected tcp:HOST:PORT (an IPv6 address in brackets: tcp:[::1]:80)"),
    ("http:", "http: needs a URL"),
    ("http:ftp://h/", "expected an http:// URL (https is not supported: probe the plain-http port)"),
    ("http://:80/", "the URL has no host"),
    ("http://h:port/", "the URL's port is not a number from 0 to 65535"),
    ("exec:", "exec: needs a command"),
    ("exec:'unclosed", "the command cannot be split into arguments (No closing quotation)"),
    ("exec:a\x00b", "the command contains a NUL byte"),
])
def test_refused_forms(text, reason):
    with pytest.raises(InvalidValue) as info:
        parse_check(text)
    suffix = "" if reason.startswith("unknown check") else f" (a check is one of {READY_FORMS})"
    assert info.value.reason == reason + suffix
    assert str(info.value) == f"{reason}{suffix}, got {text!r}"


def test_https_is_refused_with_a_way_out():
    with pytest.raises(InvalidValue) as info:
        parse_check("https://h/")
    assert info.value.reason == f"https is not supported: probe a plain-http port (a check is one of {READY_FORMS})"


def test_not_text_is_refused():
    with pytest.raises(InvalidValue) as info:
        parse_check(3)
    assert str(info.value) == "expected a check as text, got 3"


def test_option_table_converts_ready_and_health_with_the_parser():
    ready, health = WATCHER_OPTIONS["ready"], WATCHER_OPTIONS["health"]
    assert ready.type_name == health.type_name == "check"
    assert ready.parse(" tcp:127.0.0.1:80 ") == "tcp:127.0.0.1:80"  # kept as text: JSON replies, spec comparisons
    assert health.parse("watchdog") == "watchdog"
    with pytest.raises(InvalidValue):
        ready.parse("watchdog")
    with pytest.raises(InvalidValue):
        health.parse("fd:1")


def test_config_file_error_names_file_section_and_option(tmp_path):
    path = tmp_path / "circus.ini"
    path.write_text(textwrap.dedent("""\
        [watcher:web]
        cmd = sleep 10
        ready = tcp:host
        """))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == (
        f"{path}: [watcher:web] ready = 'tcp:host': expected HOST:PORT, as in 127.0.0.1:8000 (an IPv6 address in "
        f"brackets: [::1]:8000) (a check is one of {READY_FORMS})")
    assert (info.value.section, info.value.option, info.value.value) == ("watcher:web", "ready", "tcp:host")


def test_config_file_keeps_valid_checks(tmp_path):
    path = tmp_path / "circus.ini"
    path.write_text(textwrap.dedent("""\
        [watcher:web]
        cmd = sleep 10
        ready = http://127.0.0.1:80$(circus.wid)/health
        health = watchdog
        """))
    web = load_config(str(path)).watchers[0]
    assert (web["ready"], web["health"]) == ("http://127.0.0.1:80$(circus.wid)/health", "watchdog")


def test_split_host_port():
    assert split_host_port("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_host_port("[::1]:8080") == ("::1", 8080)
    assert split_host_port("db.local:5432") == ("db.local", 5432)


def test_fill_placeholders():
    env = {"PORT": "8001", "X": "x"}
    text = "h:$PORT/$(circus.wid)/$(CIRCUS.WID)/((circus.wid))/${X}y/$(circus.env.port)/$UNSET/${UNSET}"
    assert fill_placeholders(text, wid=3, env=env) == "h:8001/3/3/3/xy/8001/$UNSET/${UNSET}"
    assert fill_placeholders("plain", wid=1, env={}) == "plain"
