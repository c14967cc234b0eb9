"""Idle connections cannot use up gcircusd's file descriptors (issue 10).

Any local user could open connections to the loopback control endpoint until gcircusd hit its fd limit; spawns then
failed with EMFILE. Each channel now keeps at most a quarter of the soft RLIMIT_NOFILE (here 256: 64 connections) and
shuts down connections past that, so processes still spawn, and the endpoint serves again once the flood is gone.
"""
from __future__ import annotations

import os
import re
import socket

from tests.support.control import Dealer
from tests.support.daemons import circus_config, daemon_with_fd_limit
from tests.support.waiting import wait_for

FD_LIMIT = 256
FLOOD = 300


def shed_count(conns: list[socket.socket], shut: set) -> int:
    """How many of `conns` gcircusd has shut down (collected in `shut`): they read end of file once zmq's greeting
    bytes are drained."""
    for conn in conns:
        if conn in shut:
            continue
        conn.setblocking(False)
        try:
            while data := conn.recv(4096):
                del data
            shut.add(conn)  # b"": the peer shut the connection down
        except BlockingIOError:
            pass
        except OSError:
            shut.add(conn)
    return sum(conn in shut for conn in conns)


def test_a_connection_flood_leaves_fds_for_spawning(tmp_path):
    config, endpoint = circus_config(tmp_path, """
        [watcher:w]
        cmd = sleep 3600
        numprocesses = 2
        """)
    flood: list[socket.socket] = []
    with daemon_with_fd_limit(tmp_path, config, FD_LIMIT) as (daemon, output):
        probe = Dealer(endpoint)
        try:
            wait_for(lambda: len(probe.call("list", name="w")["pids"]) == 2, 30, message="daemon serving")
            host, port = endpoint[len("tcp://"):].rsplit(":", 1)
            for _ in range(FLOOD):
                flood.append(socket.create_connection((host, int(port))))
            shedding = lambda: re.search(r"endpoint: \d+ connections already \(limit 64\)", output())  # noqa: E731
            # Either the cap has shut down every connection past it (gcircusd accepts and sheds them one by one,
            # slowly on a loaded machine), or (without a cap) the flood has taken nearly every fd.
            shut: set[socket.socket] = set()
            wait_for(lambda: shed_count(flood, shut) >= FLOOD + 1 - 64 or len(os.listdir(f"/proc/{daemon.pid}/fd"))
                     >= FD_LIMIT - 8, 60, message="the flood accepted or refused")
            # 20 more processes need pipes: the fds the flood would have taken are still there.
            assert probe.call("incr", name="w", nb=20, waiting=True)["numprocesses"] == 22
            wait_for(lambda: len(probe.call("list", name="w")["pids"]) == 22, 30, message="22 processes")
            assert "cannot spawn" not in output()
            assert shedding()
            for conn in flood:
                conn.close()
            flood.clear()
            late = Dealer(endpoint)  # the endpoint serves new clients again
            try:
                assert late.call("status", name="w")["status"] == "active"
            finally:
                late.close()
        finally:
            probe.close()
            for conn in flood:
                conn.close()
