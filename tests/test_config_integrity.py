"""A root gcircusd refuses what another user can change (config files, includes, hook and plugin modules, their
directories) and never follows a symbolic link another user planted at its pidfile or a stream file's path.

The other user is a real one, made with useradd for this module and removed after it.
"""
from __future__ import annotations

import json
import os
import pwd
import signal

import gevent
import pytest
from gevent import subprocess as gsubprocess

from tests.support.daemons import make_config, marker_config, run_cli
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the checks apply to a root gcircusd; a second user "
                                                          "needs root to be made")

INTRUDER = "gcircus-intruder"  # this module's own: no other test module uses (or removes) it
SLEEPER = """
    [watcher:sleeper]
    cmd = sleep 1000
    graceful_timeout = 2
    """


@pytest.fixture(scope="module")
def intruder() -> pwd.struct_passwd:
    try:
        pwd.getpwnam(INTRUDER)
    except KeyError:
        gsubprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                         INTRUDER], check=True, timeout=60)
    yield pwd.getpwnam(INTRUDER)
    gsubprocess.run(["userdel", INTRUDER], check=True, timeout=60)  # (scripts/test keeps a module on one worker)


def refused(config: str, *args: str, env: dict | None = None) -> str:
    """gcircusd's stderr, once it refused the configuration (exit 2)."""
    result = run_cli(config, *args, env=env, timeout=30)
    assert result.returncode == 2, (result.returncode, result.stderr)
    return result.stderr


def give(path, user: pwd.struct_passwd) -> None:
    os.lchown(path, user.pw_uid, user.pw_gid)


# -- configuration files -------------------------------------------------------------------------------------------

def test_a_config_file_another_user_owns_is_refused(tmp_path, intruder):
    config, marker = marker_config(tmp_path)
    give(config, intruder)
    error = refused(config)
    assert config in error and f"user {INTRUDER}" in error
    assert not marker.exists()


def test_a_group_or_world_writable_config_file_is_refused(tmp_path, intruder):
    config, _ = marker_config(tmp_path)
    os.chmod(config, 0o664)
    assert "group-writable" in refused(config)
    os.chmod(config, 0o646)
    assert "world-writable" in refused(config)


def test_a_config_in_a_directory_another_user_can_write_is_refused(tmp_path, intruder):
    config, _ = marker_config(tmp_path)
    directory = os.path.dirname(config)
    give(directory, intruder)
    error = refused(config)
    assert f"the directory {directory} can be changed by its owner, user {INTRUDER}" in error
    os.chmod(directory, 0o1777)  # sticky, and root's again: the intruder cannot replace root's file in it
    os.chown(directory, 0, 0)
    assert run_cli(config, "--check-config", timeout=30).returncode == 0


def test_an_include_another_user_can_write_is_refused(tmp_path, intruder):
    include = tmp_path / "extra.ini"
    include.write_text("[watcher:extra]\ncmd = sleep 1000\n")
    config = make_config(tmp_path, SLEEPER, circus="include = extra.ini")
    assert run_cli(config, "--check-config", timeout=30).returncode == 0
    os.chmod(include, 0o666)
    error = refused(config)
    assert f"included file {include}" in error and "world-writable" in error


def test_an_include_dir_others_can_add_files_to_is_refused_even_sticky(tmp_path, intruder):
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "a.ini").write_text("[watcher:a]\ncmd = sleep 1000\n")
    config = make_config(tmp_path, SLEEPER, circus=f"include_dir = {conf_d}")
    assert run_cli(config, "--check-config", timeout=30).returncode == 0
    os.chmod(conf_d, 0o1777)
    error = refused(config)
    assert f"include directory {conf_d}" in error and "world-writable" in error


# -- modules gcircusd imports: hooks and plugins ---------------------------------------------------------------------

def hook_module(tmp_path, name: str) -> tuple[str, object]:
    """A directory holding module `name` whose import creates a marker file; (directory, marker)."""
    directory = tmp_path / "hooks"
    directory.mkdir(exist_ok=True)
    marker = tmp_path / f"{name}-imported"
    (directory / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n\ndef run(**kwargs):\n"
                                          "    return True\n")
    return str(directory), marker


def test_a_hook_module_another_user_owns_is_refused_before_it_runs(tmp_path, intruder):
    directory, marker = hook_module(tmp_path, "evilhook")
    config = make_config(tmp_path, f"""
        [watcher:sleeper]
        cmd = sleep 1000
        hooks.before_start = evilhook.run

        [env:sleeper]
        PYTHONPATH = {directory}
        """)
    assert run_cli(config, "--check-config", timeout=30).returncode == 0 and marker.exists()
    marker.unlink()
    give(os.path.join(directory, "evilhook.py"), intruder)
    error = refused(config)
    assert f"module file {directory}/evilhook.py" in error and f"user {INTRUDER}" in error
    assert not marker.exists()


def test_a_hook_directory_others_can_write_is_refused(tmp_path, intruder):
    directory, marker = hook_module(tmp_path, "hook2")
    os.chmod(directory, 0o1777)  # even sticky: anyone may add a module (or a .pth file) there
    config = make_config(tmp_path, f"""
        [watcher:sleeper]
        cmd = sleep 1000
        hooks.before_start = hook2.run

        [env:sleeper]
        PYTHONPATH = {directory}
        """)
    error = refused(config)
    assert f"PYTHONPATH directory {directory}" in error and "world-writable" in error
    assert not marker.exists()


def test_a_plugin_module_another_user_can_write_is_refused(tmp_path, intruder):
    directory, marker = hook_module(tmp_path, "evilplugin")
    plugin = os.path.join(directory, "evilplugin.py")
    with open(plugin, "a") as f:
        f.write("from gcircus.plugins.base import NativePlugin\nclass Plugin(NativePlugin):\n    pass\n")
    os.chmod(plugin, 0o664)
    config = make_config(tmp_path, SLEEPER + """
    [plugin:evil]
    use = evilplugin.Plugin
    """)
    error = refused(config, env={"PYTHONPATH": directory})
    assert f"module file {plugin}" in error and "group-writable" in error
    assert not marker.exists()


# -- the pidfile ---------------------------------------------------------------------------------------------------

def test_a_pidfile_symlink_another_user_planted_refuses_the_start(tmp_path, intruder):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    pidfile = tmp_path / "gcircusd.pid"
    os.symlink(target, pidfile)
    give(pidfile, intruder)
    config, marker = marker_config(tmp_path)
    result = run_cli(config, "--pidfile", str(pidfile), timeout=30)
    assert result.returncode == 1, result.stderr
    assert f"pidfile {pidfile} is a symbolic link owned by user {INTRUDER}" in result.stderr
    assert target.read_text() == "keep me\n" and not marker.exists()


# -- stream files ---------------------------------------------------------------------------------------------------

def stream_events(running, events: list) -> list[dict]:
    return [message for topic, message in events if topic == b"watcher.talker.stream"]


def test_a_planted_stream_file_symlink_is_a_sink_failure_never_written_through(tmp_path, gcircusd, intruder):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    out = tmp_path / "out.log"
    os.symlink(target, out)
    give(out, intruder)
    running = gcircusd(f"""
        [watcher:talker]
        cmd = sh -c 'while true; do echo hello; sleep 0.2; done'
        autostart = false
        graceful_timeout = 2
        stdout_stream.class = WatchedFileStream
        stdout_stream.filename = {out}
        """)
    events: list[tuple[bytes, dict]] = []
    with running.consumer("watcher.talker.") as consumer:
        collector = gevent.spawn(lambda: [events.append((topic, json.loads(body))) for topic, body in consumer])
        try:
            wait_for(lambda: running.call("set", name="talker", options={"respawn": True})
                     and any(topic == b"watcher.talker.updated" for topic, _ in events), message="the subscription")
            running.call("start", name="talker")
            [failure] = wait_for(lambda: stream_events(running, events), 30, message="a stream failure event")
            assert "symbolic link" in failure["error"] and INTRUDER in failure["error"]
            wait_for(lambda: "is a symbolic link owned by user" in running.daemon.output(), 30, message="logged")
            assert target.read_text() == "keep me\n"

            os.unlink(out)  # retried: once the path is a plain one, the output lands there
            wait_for(lambda: out.exists() and b"hello" in out.read_bytes(), 60, message="output in the file")
            wait_for(lambda: len(stream_events(running, events)) == 2, 30, message="the recovery event")
        finally:
            consumer.stop()
            collector.join(2)
    assert target.read_text() == "keep me\n"


def test_a_symlink_planted_before_a_reopen_is_not_followed(tmp_path, gcircusd, intruder):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    out = tmp_path / "out.log"
    running = gcircusd(f"""
        [watcher:talker]
        cmd = sh -c 'while true; do echo hello; sleep 0.2; done'
        graceful_timeout = 2
        stdout_stream.filename = {out}
        """)
    wait_for(lambda: out.exists() and b"hello" in out.read_bytes(), 30, message="output in the file")
    os.rename(out, tmp_path / "out.log.1")  # logrotate moved it; the intruder plants a link in its place
    os.symlink(target, out)
    give(out, intruder)
    running.daemon.signal(signal.SIGUSR1)
    wait_for(lambda: "is a symbolic link owned by user" in running.daemon.output(), 30, message="the refusal logged")
    os.unlink(out)
    wait_for(lambda: out.exists() and not out.is_symlink() and b"hello" in out.read_bytes(), 60,
             message="output in a new plain file")
    assert target.read_text() == "keep me\n"
