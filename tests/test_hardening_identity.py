"""A numeric uid with no passwd entry has no primary group: without a gid it would keep gcircusd's (root's) group.

It is refused wherever a watcher's identity is given: the config file (exit 2, naming file, section and option), the
Watcher and Process classes, and the `add` and `set` commands (errno 3, nothing changed).
"""
from __future__ import annotations

import pwd

import pytest
from gevent import subprocess as gsubprocess

from gcircus.client import Client
from gcircus.config import load_config
from gcircus.daemon import Arbiter
from gcircus.errors import ConfigError
from gcircus.process import Process, SpawnError
from gcircus.watcher import Watcher
from tests.support.daemons import GCIRCUSD, write_config
from tests.support.ports import free_port

NO_PASSWD_UID = 54321


@pytest.fixture(autouse=True)
def _uid_has_no_passwd_entry():
    with pytest.raises(KeyError):
        pwd.getpwuid(NO_PASSWD_UID)


def _config(tmp_path, identity: str) -> str:
    return write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = tcp://127.0.0.1:{free_port()}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}

        [watcher:web]
        cmd = /bin/sleep 1000
        {identity}
        """)


def test_config_refuses_a_uid_without_passwd_entry_and_without_gid(tmp_path):
    path = _config(tmp_path, f"uid = {NO_PASSWD_UID}")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.file, info.value.section, info.value.option) == (path, "watcher:web", "uid")
    assert "no passwd entry" in info.value.reason and "gid" in info.value.reason
    result = gsubprocess.run(GCIRCUSD + [path], stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE, timeout=30,
                             text=True)
    assert result.returncode == 2
    assert path in result.stderr and "[watcher:web]" in result.stderr and "uid" in result.stderr


def test_config_accepts_a_uid_without_passwd_entry_given_a_gid(tmp_path):
    config = load_config(_config(tmp_path, f"uid = {NO_PASSWD_UID}\n        gid = {NO_PASSWD_UID}"))
    assert config.watchers[0]["uid"] == str(NO_PASSWD_UID)


def test_config_names_the_option_of_an_unknown_user_or_group(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, "gid = gcircus-no-such-group"))
    assert info.value.option == "gid" and "unknown group" in info.value.reason


def test_process_and_watcher_refuse_it():
    with pytest.raises(SpawnError, match="no passwd entry"):
        Process("ident", 1, "sleep 1000", uid=NO_PASSWD_UID)
    with pytest.raises(ValueError, match="no passwd entry"):
        Watcher("ident", "sleep 1000", uid=str(NO_PASSWD_UID))


@pytest.fixture
def client():
    watcher = Watcher("w", "/bin/sleep 1000", autostart=False)
    arbiter = Arbiter([watcher], endpoint=f"tcp://127.0.0.1:{free_port()}")
    arbiter.start(background=True)
    client = Client(arbiter.endpoint)
    yield client
    client.close()
    arbiter.stop(graceful=False)
    arbiter.wait_channels_closed(5)


def test_add_and_set_refuse_it_and_change_nothing(client):
    reply = client.call("add", name="x", cmd="/bin/sleep 1000", options={"uid": NO_PASSWD_UID})
    assert reply["status"] == "error" and reply["errno"] == 3 and "no passwd entry" in reply["reason"], reply
    reply = client.call("set", name="w", options={"uid": str(NO_PASSWD_UID)})
    assert reply["status"] == "error" and reply["errno"] == 3 and "no passwd entry" in reply["reason"], reply
    assert client.call("list")["watchers"] == ["w"]
    assert client.call("get", name="w", keys=["uid"])["options"]["uid"] is None
