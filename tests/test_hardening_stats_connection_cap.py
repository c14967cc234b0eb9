"""The stats channel caps its connections like the control and event channels (issue 10): idle subscribers to
stats_endpoint cannot use up gcircusd's file descriptors."""
from __future__ import annotations

import re
import socket

from tests.support.control import Dealer
from tests.support.daemons import circus_config, daemon_with_fd_limit
from tests.support.ports import free_port
from tests.support.waiting import wait_for

FD_LIMIT = 256  # a channel keeps at most a quarter: 64 connections
FLOOD = 300  # more than the fds gcircusd has: without the cap, spawning would fail with EMFILE


def test_a_flood_of_stats_subscribers_is_shed_past_the_cap(tmp_path):
    stats_port = free_port()
    config, endpoint = circus_config(tmp_path, """
        [watcher:w]
        cmd = sleep 3600
        """, circus=f"stats_endpoint = tcp://127.0.0.1:{stats_port}\n")
    flood: list[socket.socket] = []
    with daemon_with_fd_limit(tmp_path, config, FD_LIMIT) as (_, output):
        probe = Dealer(endpoint)
        try:
            wait_for(lambda: len(probe.call("list", name="w")["pids"]) == 1, 30, message="daemon serving")
            for _ in range(FLOOD):
                flood.append(socket.create_connection(("127.0.0.1", stats_port)))
            wait_for(lambda: re.search(r"stats_endpoint: \d+ connections already \(limit 64\)", output()), 30,
                     message="connections past the cap shed")
            # 20 more processes need pipes: the fds the flood would have taken are still there.
            reply = probe.call("incr", name="w", nb=20, waiting=True)
            assert reply.get("numprocesses") == 21, (reply, output())
            wait_for(lambda: len(probe.call("list", name="w")["pids"]) == 21, 30, message="21 processes")
            assert "cannot spawn" not in output()
        finally:
            probe.close()
            for conn in flood:
                conn.close()
