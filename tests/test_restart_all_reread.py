"""`restart` without a name (it re-reads the ini): a file that cannot be applied stops nothing, and casts coalesce."""
from __future__ import annotations

import socket

from tests.support.control import Dealer
from tests.support.daemons import circus_config
from tests.support.ports import free_port
from tests.support.processes import spawned
from tests.support.waiting import wait_for

# Records each spawn; stops at once on SIGTERM.
RECORDED = """sh -c 'echo $$ >> {record}; exec sleep 3600'"""


def start(tmp_path, daemon_factory):
    record = tmp_path / "spawns"
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:w]
        cmd = {RECORDED.format(record=record)}
        """)
    daemon = daemon_factory(config)
    dealer = Dealer(endpoint)
    wait_for(lambda: daemon.proc.poll() is None and len(spawned(record)) == 1, 30, message="first spawn")
    return daemon, dealer, config, record


def test_a_new_socket_on_a_port_in_use_is_the_error_reply_and_the_watchers_keep_running(tmp_path, daemon_factory):
    daemon, dealer, config, record = start(tmp_path, daemon_factory)
    held = socket.socket()
    try:
        held.bind(("127.0.0.1", free_port()))
        held.listen()
        [pid] = wait_for(daemon.children, 30, message="the child")
        wait_for(lambda: dealer.call("status", name="w")["status"] == "active", 30, message="w active")
        with open(config, "a") as f:
            f.write(f"\n[socket:x]\nhost = 127.0.0.1\nport = {held.getsockname()[1]}\n")
        for props in ({}, {"waiting": True}):
            reply = dealer.call("restart", **props)
            assert (reply["status"], reply["errno"]) == ("error", 3), reply
            assert "cannot bind" in reply["reason"], reply
            # Nothing was stopped: the same process, the watcher active, no spawn since.
            assert dealer.call("status", name="w")["status"] == "active"
            assert daemon.children() == [pid] and len(spawned(record)) == 1
        # Once the port is free the same file applies: the restart replaces the process and binds the socket.
        held.close()
        reply = dealer.call("restart", waiting=True)
        assert reply["status"] == "ok", reply
        assert [s["name"] for s in dealer.call("listsockets")["sockets"]] == ["x"]
        wait_for(lambda: dealer.call("status", name="w")["status"] == "active" and len(spawned(record)) == 2
                 and pid not in daemon.children(), 30, message="the restarted watcher")
    finally:
        held.close()
        dealer.close()


def test_restart_casts_without_a_name_share_one_restart(tmp_path, daemon_factory):
    daemon, dealer, config, record = start(tmp_path, daemon_factory)
    try:
        for _ in range(40):
            dealer.socket.send(b'{"command": "restart", "msg_type": "cast", "properties": {}}')
        # Requests of one connection are taken in order: every cast is in before this waited restart, which runs
        # after the restarts they started.
        reply = dealer.collect([dealer.send("restart", waiting=True)], timeout=120)[0]
        assert reply["status"] == "ok", reply
        wait_for(lambda: dealer.call("status", name="w")["status"] == "active", 30, message="the watcher active")
    finally:
        dealer.close()
    # The first process, the restart the first cast started, the one the other casts shared, and the waited one.
    assert len(spawned(record)) <= 4, f"{len(spawned(record))} spawns for 40 restart casts"
