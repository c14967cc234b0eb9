"""Clients that never read their replies cannot make gcircusd grow (issue 10: 5 clients x 1000 requests, 515 MB).

zmq keeps at most REPLY_HWM unread replies per client and gcircusd a backlog of BACKLOG_BYTES more; past that the
replies to that client are dropped, counted and logged, while a burst to a client that reads waits for it. A
request id, echoed in every reply, is capped in size, so a small request cannot ask for a huge reply.
"""
from __future__ import annotations

import json
import re

import zmq

from gcircus.control.outbox import BACKLOG_BYTES
from gcircus.control.server import REPLY_HWM
from gcircus.wire.protocol import MAX_ID_SIZE
from tests.support.control import Dealer
from tests.support.daemons import circus_config
from tests.support.waiting import wait_for

CLIENTS, REQUESTS = 5, 1000
BIG = 100_000  # bytes of environment: every `options` reply carries them


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def dropped(daemon) -> int:
    counts = re.findall(r"does not read its replies \(.*?\); (\d+) replies dropped", daemon.output())
    return int(counts[-1]) if counts else 0


def test_replies_to_clients_that_never_read_are_dropped(tmp_path, daemon_factory):
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:w]
        cmd = sleep 3600

        [env:w]
        BIG = {"x" * BIG}
        """)
    daemon = daemon_factory(config)
    probe = Dealer(endpoint)
    sockets = []
    try:
        wait_for(lambda: probe.call("status", name="w")["status"] == "active", 30, message="watcher active")
        before = rss_mib(daemon.pid)
        request = json.dumps({"id": "x", "command": "options", "properties": {"name": "w"}}).encode()
        for _ in range(CLIENTS):
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.linger = 0
            sock.rcvhwm = 1  # so this test process does not buffer what the daemon sends either
            sock.rcvbuf = 4096
            sock.connect(endpoint)
            sockets.append(sock)
        for _ in range(REQUESTS):
            for sock in sockets:
                sock.send(request)
        # Drops are logged at the first one, then every DROP_LOG_EVERY (1000): wait until most replies are dropped.
        wait_for(lambda: dropped(daemon) >= 4000, 30, interval=0.05,
                 message="the replies past each client's room dropped")
        # By construction: per client, REPLY_HWM replies of ~100 KB in zmq and BACKLOG_BYTES waiting in gcircusd
        # (the replies used to pile up: 500 MB).
        assert rss_mib(daemon.pid) - before < CLIENTS * (REPLY_HWM * BIG + BACKLOG_BYTES) / 2**20 + 64
        assert probe.call("status", name="w")["status"] == "active"  # a client that reads is served as before
    finally:
        probe.close()
        for sock in sockets:
            sock.close(linger=0)


def test_an_oversized_request_id_is_refused(tmp_path, daemon_factory):
    config, endpoint = circus_config(tmp_path, """
        [watcher:w]
        cmd = sleep 3600
        """)
    daemon_factory(config)
    probe = Dealer(endpoint)
    try:
        probe.socket.send(json.dumps({"id": "x" * MAX_ID_SIZE, "command": "status"}).encode())
        wait_for(lambda: probe.socket.poll(0), 30, message="a reply")
        reply = json.loads(probe.socket.recv())
        assert reply["status"] == "error" and reply["errno"] == 3 and reply["id"] is None
        assert f"'id' takes {MAX_ID_SIZE + 2} bytes of JSON (limit {MAX_ID_SIZE})" in reply["reason"]
        assert probe.call("status")["status"] == "ok"
    finally:
        probe.close()
