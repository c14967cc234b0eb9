"""scripts/run installs the runtime only and scripts/_install reinstalls exactly when needed.

The real scripts run in a copy of the repository's top level whose .venv/bin/python and .venv/bin/gcircusd are
stand-ins that record how they were called: what is under test is the scripts' decisions (what to install, when,
what to run), not pip.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from gcircus import launcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\n'


def make_tree(tmp_path):
    tree = tmp_path / "repo"
    (tree / "scripts").mkdir(parents=True)
    (tree / "gcircus" / "native").mkdir(parents=True)
    for name in ("scripts/_install", "scripts/_browser", "scripts/run", "scripts/test", "setup.cfg", "setup.py",
                 "gcircus/native/launch.c"):
        shutil.copy2(os.path.join(ROOT, name), tree / name)
    bin_dir = tree / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "gcircusd"):
        (bin_dir / name).write_text(RECORDER)
        (bin_dir / name).chmod(0o755)
    return tree


def run(tree, tmp_path, *argv):
    """Run a script from an unrelated directory; return the calls the stand-ins saw (then forget them)."""
    calls = tmp_path / "calls"
    env = {"PATH": "/usr/bin:/bin", "CALLS": str(calls), "GCIRCUS_BROWSER_INSTALL": "0"}  # never apt-get here
    result = subprocess.run([str(tree / argv[0]), *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    seen = calls.read_text().splitlines() if calls.exists() else []
    calls.unlink(missing_ok=True)
    return [line for line in seen if "--upgrade pip" not in line]


def test_run_installs_the_runtime_only_and_once(tmp_path):
    tree = make_tree(tmp_path)
    assert run(tree, tmp_path, "scripts/run") == ["python -m pip install -q -e .", "gcircusd conf/app.ini"]
    assert run(tree, tmp_path, "scripts/run", "other.ini") == ["gcircusd other.ini"]


def test_run_takes_a_relative_config_from_the_callers_directory(tmp_path):
    """`scripts/run my.ini` from elsewhere runs my.ini from there (it ran the repository's my.ini); the demo runs
    from the repository's top level."""
    tree = make_tree(tmp_path)
    gcircusd = tree / ".venv" / "bin" / "gcircusd"
    gcircusd.write_text('#!/bin/sh\necho "$(basename "$0") $* in $(pwd -P)" >> "$CALLS"\n')
    here = os.path.realpath(tmp_path)
    assert run(tree, tmp_path, "scripts/run", "my.ini")[-1] == f"gcircusd my.ini in {here}"
    assert run(tree, tmp_path, "scripts/run", "--log-level", "debug", "conf/my.ini") == [
        f"gcircusd --log-level debug conf/my.ini in {here}"]
    assert run(tree, tmp_path, "scripts/run") == [f"gcircusd conf/app.ini in {os.path.realpath(tree)}"]


def test_the_test_install_adds_the_extras_and_covers_the_runtime(tmp_path):
    tree = make_tree(tmp_path)
    assert run(tree, tmp_path, "scripts/run") == ["python -m pip install -q -e .", "gcircusd conf/app.ini"]
    # The runtime stamp does not stand for the test extras...
    assert run(tree, tmp_path, "scripts/_install", "test") == ["python -m pip install -q -e .[test]"]
    assert run(tree, tmp_path, "scripts/_install", "test") == []
    # ...but the test install contains the runtime one.
    assert run(tree, tmp_path, "scripts/run") == ["gcircusd conf/app.ini"]


def test_a_changed_setup_cfg_reinstalls_each_kind_once(tmp_path):
    tree = make_tree(tmp_path)
    run(tree, tmp_path, "scripts/_install", "test")
    with open(tree / "setup.cfg", "a", encoding="utf-8") as f:
        f.write("\n# changed\n")
    assert run(tree, tmp_path, "scripts/run") == ["python -m pip install -q -e .", "gcircusd conf/app.ini"]
    assert run(tree, tmp_path, "scripts/_install", "test") == ["python -m pip install -q -e .[test]"]
    assert run(tree, tmp_path, "scripts/run") == ["gcircusd conf/app.ini"]


def test_install_without_a_kind_is_a_usage_error(tmp_path):
    tree = make_tree(tmp_path)
    result = subprocess.run([str(tree / "scripts" / "_install")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage: scripts/_install runtime|test" in result.stderr


def test_test_script_installs_the_test_extras_before_running_pytest(tmp_path):
    """...and lints and type-checks in between, with the tools the extras installed (not whatever is on PATH)."""
    tree = make_tree(tmp_path)
    calls = run(tree, tmp_path, "scripts/test")
    assert calls[0] == "python -m pip install -q -e .[test]"
    assert [call.split()[:3] for call in calls[1:3]] == [["python", "-m", "ruff"], ["python", "-m", "mypy"]]
    assert calls[3].startswith("python -m pytest") and len(calls) == 4


def test_a_changed_launcher_source_reinstalls(tmp_path):
    """gcircus-launch is compiled by the install (setup.py): a change to its C source must rebuild it."""
    tree = make_tree(tmp_path)
    run(tree, tmp_path, "scripts/_install", "test")
    with open(tree / "gcircus" / "native" / "launch.c", "a", encoding="utf-8") as f:
        f.write("\n/* changed */\n")
    assert run(tree, tmp_path, "scripts/_install", "test") == ["python -m pip install -q -e .[test]"]


def test_the_install_built_the_native_launcher_where_a_compiler_is():
    """The real install of this checkout: with a C compiler on the machine, gcircus-launch is there and used."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: gcircusd falls back to setpriv and /bin/sh (and says so at start)")
    assert os.access(launcher.NATIVE_LAUNCHER, os.X_OK), f"{launcher.NATIVE_LAUNCHER} was not built by the install"
    if os.environ.get(launcher.LAUNCHER_ENV) != "shell":
        assert launcher.native_launcher() == str(launcher.NATIVE_LAUNCHER)
