"""A flood of lifecycle commands is bounded (issue 10): reads, stops and quits stay served, memory stays flat.

1100 waiting restarts used to fill the server's 1024 handlers, so reads timed out and `quit` was answered but not
done; 20,000 restart casts each ran a restart, for minutes. Now identical restarts queued back to back share one
run, a watcher queues at most MAX_QUEUED_COMMANDS distinct commands, and a waiting reply holds no handler.
"""
from __future__ import annotations

import os
import signal

from gcircus.command_queue import MAX_QUEUED_COMMANDS
from tests.support.control import Dealer
from tests.support.daemons import circus_config
from tests.support.processes import running_own_program, spawned
from tests.support.waiting import wait_for

# Ignores SIGTERM: a restart stays in its stop until the test kills the child. Records each spawn.
STUCK = """sh -c 'echo $$ >> {record}; trap "" TERM; while :; do sleep 0.1; done'"""
# Stops only once the test creates the `release` file: the restart the first cast starts cannot finish, and let a
# second one start, while the casts are still being read, however loaded the machine is.
HELD = """sh -c 'echo $$ >> {record}; trap "while [ ! -e {record}.release ]; do sleep 0.05; done; exit 0" TERM; \
while :; do sleep 0.1; done'"""


def start(tmp_path, daemon_factory, command: str):
    record = tmp_path / "spawns"
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:w]
        cmd = {command.format(record=record)}
        graceful_timeout = 120
        """)
    daemon = daemon_factory(config)
    dealer = Dealer(endpoint)
    wait_for(lambda: daemon.proc.poll() is None and len(spawned(record)) == 1, 30, message="first spawn")
    [pid] = wait_for(daemon.children, 30, message="the child")
    wait_for(lambda: running_own_program(pid), 30, message="the child's exec")
    return daemon, dealer, record


def unstick(record) -> None:
    """SIGKILL the recorded children, so the restart stuck stopping them goes on."""
    for pid in spawned(record):
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_reads_and_quit_are_served_behind_1100_waiting_restarts(tmp_path, daemon_factory):
    daemon, dealer, record = start(tmp_path, daemon_factory, STUCK)
    try:
        restarts = [dealer.send("restart", name="w", waiting=True) for _ in range(1100)]
        # Each read is answered while the restarts wait (the first one is stuck stopping the child).
        for command, props in (("status", {}), ("list", {"name": "w"}), ("stats", {"name": "w"}),
                               ("options", {"name": "w"}), ("numprocesses", {})):
            assert dealer.call(command, **props)["status"] != "error", command
        assert not any(i in dealer.replies for i in restarts)
        unstick(record)
        assert dealer.call("quit")["status"] == "ok"
        assert daemon.wait(30) == 0
        replies = dealer.collect(restarts)
    finally:
        dealer.close()
    # Identical restarts sent back to back are one restart: no more than two ran (the first, and the rest shared).
    assert len(spawned(record)) <= 3
    assert all(r["status"] == "ok" or "shutting down" in r["reason"] for r in replies)


def test_a_watcher_queues_a_bounded_number_of_commands(tmp_path, daemon_factory):
    daemon, dealer, record = start(tmp_path, daemon_factory, STUCK)
    try:
        first = dealer.send("restart", name="w", waiting=True)
        wait_for(lambda: dealer.call("status", name="w")["status"] == "stopping", 30, message="first restart runs")
        # Alternating commands cannot share: each one queues, up to the limit.
        ids = [dealer.send("start" if n % 2 else "restart", name="w", waiting=True)
               for n in range(MAX_QUEUED_COMMANDS)]
        refused = dealer.collect([dealer.send("restart", name="w", waiting=True) for _ in range(3)])
        assert all(r["status"] == "error" and r["errno"] == 5 for r in refused), refused
        assert f"already has {MAX_QUEUED_COMMANDS} commands waiting (limit {MAX_QUEUED_COMMANDS})" \
            in refused[0]["reason"]
        # A stop goes first: the queued commands are cancelled at once, and the watcher ends stopped.
        stop = dealer.send("stop", name="w", waiting=True)
        queued = dealer.collect(ids)
        unstick(record)
        assert dealer.collect([first, stop])[1]["status"] == "ok"
        assert dealer.call("status", name="w")["status"] == "stopped"
    finally:
        dealer.close()
    assert all(r["status"] == "error" and "was stopped before this command ran" in r["reason"] for r in queued)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_restart_casts_share_one_restart(tmp_path, daemon_factory):
    daemon, dealer, record = start(tmp_path, daemon_factory, HELD)
    try:
        before = rss_mib(daemon.pid)
        for _ in range(20_000):
            dealer.socket.send(b'{"command": "restart", "msg_type": "cast", "properties": {"name": "w"}}')
        dealer.call("status")  # requests of one connection are taken in order: every cast is in
        (tmp_path / "spawns.release").touch()
        # By construction a cast keeps nothing once it joined the queued restart (each used to keep a greenlet:
        # 20,000 casts took 190 MiB); 64 MiB leaves room for allocator noise.
        assert rss_mib(daemon.pid) - before < 64
        # Waits for the restart the casts queued (it shares it, or queues right behind it).
        reply = dealer.call("restart", name="w", waiting=True)
        assert reply["status"] == "ok", reply
    finally:
        dealer.close()
    # The first process, the restart the first cast started, the one the others shared, and the waited one.
    assert len(spawned(record)) <= 4, f"{len(spawned(record))} spawns for 20,000 restart casts"
