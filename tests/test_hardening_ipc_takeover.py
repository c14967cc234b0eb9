"""A second gcircusd on the ipc:// endpoint of a running one refuses to start (issue 10).

zmq binds an ipc path by replacing the file: the second daemon used to start, duplicate every watcher and leave the
first unreachable. Now it exits 1 naming the endpoint, and the first keeps its endpoint; a socket file nobody
listens on (left by a killed daemon) is still taken over.
"""
from __future__ import annotations

import os
import socket

from tests.support.control import Dealer
from tests.support.daemons import circus_config
from tests.support.waiting import wait_for


def ipc_config(tmp_path, name: str) -> tuple[str, str]:
    directory = tmp_path / name
    directory.mkdir()
    return circus_config(directory, """
        [watcher:w]
        cmd = sleep 3600
        """, endpoint=f"ipc://{tmp_path}/control.sock")


def answers(endpoint: str) -> dict:
    dealer = Dealer(endpoint)
    try:
        return dealer.call("status", name="w")
    finally:
        dealer.close()


def test_a_second_daemon_on_a_live_ipc_endpoint_refuses_to_start(tmp_path, daemon_factory):
    config, endpoint = ipc_config(tmp_path, "first")
    first = daemon_factory(config)
    wait_for(lambda: answers(endpoint)["status"] == "active", 30, message="first daemon serving")
    inode = os.stat(endpoint[len("ipc://"):]).st_ino
    [child] = first.children()

    config2, _ = ipc_config(tmp_path, "second")
    second = daemon_factory(config2)
    assert second.wait(30) == 1
    assert f"cannot bind endpoint {endpoint}: another process" in second.output()
    assert os.stat(endpoint[len("ipc://"):]).st_ino == inode
    assert answers(endpoint)["status"] == "active"
    assert first.children() == [child]


def test_a_stale_ipc_file_is_taken_over(tmp_path, daemon_factory):
    config, endpoint = ipc_config(tmp_path, "only")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(endpoint[len("ipc://"):])  # bound, never listening, closed: what a killed daemon leaves
    stale.close()
    daemon_factory(config)
    wait_for(lambda: answers(endpoint)["status"] == "active", 30, message="daemon serving on the stale path")
