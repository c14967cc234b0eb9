"""Values that only exec would refuse (a NUL byte, `=` in an env name, unbalanced quotes) are refused up front.

A config file holding one makes gcircusd exit 2 naming the file, section and option before anything starts; `set`
and reloadconfig answer an error and change nothing (same processes, same options); whatever still fails at spawn is
a SpawnError the watcher retries and reports, never an exception that escapes it.
"""
from __future__ import annotations

import pytest

from gcircus.client import Client
from gcircus.process import Process, SpawnError
from tests.support.daemons import write_config
from tests.support.processes import alive
from tests.support.waiting import wait_for


def _config(tmp_path, extra_watcher: str = "", extra: str = "") -> str:
    path = tmp_path / "circus.ini"
    path.write_text("\n".join([
        "[circus]", f"endpoint = ipc://{tmp_path}/ctl", f"pubsub_endpoint = ipc://{tmp_path}/pub",
        "[watcher:good]", "cmd = sleep 300", "graceful_timeout = 5",
        "[watcher:bad]", "cmd = sleep 300", "graceful_timeout = 5", extra_watcher, extra, ""]))
    return str(path)


@pytest.mark.parametrize("extra_watcher, extra, section, option", [
    ("args = 1\x002", "", "watcher:bad", "args"),
    ("", "[env:bad]\nA = B\x00C", "env:bad", "A"),
    ("", "[env]\nA\x00B = C", "env", "A\x00B"),
    ("working_dir = /tm\x00p", "", "watcher:bad", "working_dir"),
    ("uid = ro\x00ot", "", "watcher:bad", "uid"),
    ("stdout_stream.class = FileStream\nstdout_stream.filename = /tmp/x\x00y", "", "watcher:bad",
     "stdout_stream.filename"),
])
def test_config_value_that_exec_refuses_is_a_config_error(tmp_path, daemon_factory, extra_watcher, extra, section,
                                                          option):
    path = _config(tmp_path, extra_watcher, extra)
    daemon = daemon_factory(path)
    assert daemon.wait() == 2
    out = daemon.output()
    assert f"{path}: [{section}] {option.split(chr(0))[0]}" in out
    assert "NUL byte" in out
    assert "crashed" not in out and "started" not in out


def test_config_command_with_unbalanced_quotes_is_a_config_error(tmp_path, daemon_factory):
    path = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = ipc://{tmp_path}/ctl
        pubsub_endpoint = ipc://{tmp_path}/pub
        [watcher:good]
        cmd = sleep 300
        [watcher:bad]
        cmd = sleep "300
        """)
    daemon = daemon_factory(path)
    assert daemon.wait() == 2
    out = daemon.output()
    assert f"{path}: [watcher:bad] cmd = 'sleep \"300'" in out and "cannot be split" in out
    assert "started" not in out


@pytest.fixture
def running(tmp_path, daemon_factory):
    path = _config(tmp_path)
    daemon = daemon_factory(path)
    client = Client(f"ipc://{tmp_path}/ctl", timeout=30)
    wait_for(lambda: _pids(client, "bad") and _pids(client, "good"), timeout=30, message="both watchers running")
    yield path, daemon, client
    client.close()


def _pids(client: Client, name: str) -> list[int]:
    try:
        reply = client.call("list", name=name)
    except Exception:  # noqa: BLE001 - not up yet
        return []
    return reply.get("pids") or []


@pytest.mark.parametrize("key, value", [
    ("env", {"A=B": "x"}),
    ("env", {"A": "x\x00y"}),
    ("env", {"": "x"}),
    ("env", "A=x\x00y"),
    ("cmd", "sleep 3\x0000"),
    ("cmd", "sleep '300"),
    ("args", ["1", "2\x003"]),
    ("args", "'unbalanced"),
    ("working_dir", "/tm\x00p"),
    ("uid", "ro\x00ot"),
    ("gid", "wh\x00eel"),
    ("stdout_stream.filename", "/tmp/a\x00b"),
])
def test_set_value_that_exec_refuses_is_refused_and_nothing_changes(running, key, value):
    _, _, client = running
    before = _pids(client, "bad")
    options_before = client.call("options", name="bad")["options"]
    reply = client.call("set", name="bad", options={key: value})
    assert reply["status"] == "error", reply
    assert key in reply["reason"] or "split" in reply["reason"]
    assert client.call("options", name="bad")["options"] == options_before
    # Still supervised: a killed process is replaced.
    assert _pids(client, "bad") == before
    client.call("signal", name="bad", pid=before[0], signum=9)
    wait_for(lambda: _pids(client, "bad") and _pids(client, "bad") != before, timeout=30,
             message="the killed process replaced")
    assert client.call("status", name="bad")["status"] == "active"


def test_reloadconfig_with_a_nul_byte_changes_nothing(running, tmp_path):
    path, _, client = running
    before = {name: _pids(client, name) for name in ("good", "bad")}
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("[watcher:bad]\ncmd = sleep 300", "[watcher:bad]\ncmd = sleep 30\x000"))
    reply = client.call("reloadconfig")
    assert reply["status"] == "error", reply
    assert "[watcher:bad] cmd" in reply["reason"] and "NUL byte" in reply["reason"]
    assert {name: _pids(client, name) for name in ("good", "bad")} == before
    assert all(alive(pid) for pids in before.values() for pid in pids)


def test_add_with_a_bad_env_name_is_refused(running):
    _, _, client = running
    reply = client.call("add", name="third", cmd="sleep 300", options={"env": {"A=B": "1"}}, start=True)
    assert reply["status"] == "error"
    assert "A=B" in reply["reason"]
    assert "third" not in client.call("list")["watchers"]


def test_a_value_that_fails_at_exec_is_a_spawn_error(tmp_path):
    # What slips past validation (here a Process built directly) fails as a SpawnError the watcher handles.
    for process in (Process("x", 1, 'sleep "1', spawn=False, working_dir=str(tmp_path)),
                    Process("x", 1, "sleep 1", env={"A": "b\x00"}, spawn=False, working_dir=str(tmp_path))):
        with pytest.raises(SpawnError):
            process.spawn()
