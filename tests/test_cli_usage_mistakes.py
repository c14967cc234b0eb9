"""Command-line mistakes are named for what they are: a forgotten positional argument is "missing", an option is
"given twice" only when it is, and an unknown option is offered only a declared name that looks like it."""
from __future__ import annotations

import pytest

from gcircus.cli import gcircus_plugin, gcircusctl, gcircusd, gcircusd_stats


@pytest.mark.parametrize("main, name, argv, reason", [
    (gcircusd.main, "gcircusd", ["--log-level", "info"], "missing <config>"),
    (gcircusd.main, "gcircusd", ["--daemon"], "missing <config>"),
    (gcircusd.main, "gcircusd", ["--pidfile=x.pid", "--daemon"], "missing <config>"),
    (gcircus_plugin.main, "gcircus-plugin", ["--endpoint", "x"], "missing <plugin>"),
])
def test_a_forgotten_positional_argument_is_said_missing(capsys, main, name, argv, reason):
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"{name}: {reason}\n") and "Usage:" in err
    assert "given twice" not in err


@pytest.mark.parametrize("main, name, argv, option", [
    (gcircusd.main, "gcircusd", ["--daemon", "--daemon", "c.ini"], "--daemon"),
    (gcircusd.main, "gcircusd", ["--log-level", "info", "--log-lev=debug", "c.ini"], "--log-level"),
    (gcircusctl.main, "gcircusctl", ["-c", "a.ini", "--config", "b.ini", "status"], "--config"),
])
def test_an_option_given_twice_is_said_so(capsys, main, name, argv, option):
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"{name}: option {option} is given twice\n")


@pytest.mark.parametrize("main, name, typo", [
    (gcircusd_stats.main, "gcircusd-stats", "--bogsu"),
    (gcircusd_stats.main, "gcircusd-stats", "--xyz"),
    (gcircusd.main, "gcircusd", "--bogus"),
])
def test_an_unknown_option_unlike_every_declared_one_gets_no_suggestion(capsys, main, name, typo):
    assert main([typo]) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"{name}: unknown option {typo}\n")


@pytest.mark.parametrize("main, name, typo, meant", [
    (gcircusd_stats.main, "gcircusd-stats", "--pubsbu", "--pubsub"),
    (gcircusd_stats.main, "gcircusd-stats", "--statspiont", "--statspoint"),
    (gcircusctl.main, "gcircusctl", "--jsno", "--json"),
])
def test_an_unknown_option_close_to_a_declared_one_still_gets_it(capsys, main, name, typo, meant):
    assert main([typo]) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"{name}: unknown option {typo} (did you mean {meant}?)\n")
