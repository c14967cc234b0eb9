"""gcircusd's command line: version, usage and configuration errors, all refused before anything starts."""
from __future__ import annotations

import os

from gcircus import __version__
from tests.support.daemons import config_with_marker, run_cli


def config_with_bad_watcher(tmp_path, watcher_options: str) -> tuple[str, str]:
    """A config whose first watcher would create a marker file if it ever ran, plus a bad second watcher."""
    return config_with_marker(tmp_path, f"[watcher:web]\ncmd = /bin/sleep 1000\n{watcher_options}\n")


def test_version_prints_name_and_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"gcircusd {__version__}\n"


def test_no_config_prints_usage_on_stderr_and_exits_2():
    result = run_cli()
    assert result.returncode == 2
    assert "Usage:" in result.stderr
    assert "gcircusd [options] <config>" in result.stderr
    assert result.stdout == ""


def test_unknown_flag_is_a_usage_error():
    result = run_cli("--no-such-flag", "circus.ini")
    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_help_prints_options_and_exits_0():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--log-level", "--log-output", "--logger-config", "--daemon", "--pidfile", "--version"):
        assert flag in result.stdout


def test_bad_value_names_file_section_option_and_value(tmp_path):
    path, marker = config_with_bad_watcher(tmp_path, "numprocesses = abc")
    result = run_cli(path)
    assert result.returncode == 2
    assert path in result.stderr
    assert "[watcher:web]" in result.stderr
    assert "numprocesses" in result.stderr
    assert "'abc'" in result.stderr
    assert not os.path.exists(marker)


def test_typo_names_file_section_option_value_and_suggestion(tmp_path):
    path, marker = config_with_bad_watcher(tmp_path, "numprocess = 37")
    result = run_cli(path)
    assert result.returncode == 2
    assert path in result.stderr
    assert "[watcher:web]" in result.stderr
    assert "numprocess = '37'" in result.stderr
    assert "did you mean 'numprocesses'?" in result.stderr
    assert not os.path.exists(marker)


def test_missing_config_file_is_named(tmp_path):
    path = str(tmp_path / "nope.ini")
    result = run_cli(path)
    assert result.returncode == 2
    assert path in result.stderr
    assert "does not exist" in result.stderr


def test_bad_config_with_daemon_fails_in_the_launching_command(tmp_path):
    path, marker = config_with_bad_watcher(tmp_path, "numprocesses = abc")
    result = run_cli("--daemon", path)
    assert result.returncode == 2
    assert "numprocesses" in result.stderr and "'abc'" in result.stderr
    assert not os.path.exists(marker)
