"""Scale behaviour at a few hundred processes (the 10,000-process curve is benchmarks/run_scale.py's job).

What grows with the number of processes must keep its meaning when it is made cheap: the wid bookkeeping
(gcircus.process_table) hands out the lowest free wid, never one in use; batched events (gcircus.control.publisher)
arrive complete and in order; the control channel answers while a large start is under way; and a configuration
the system cannot run is refused at start with what to raise (gcircus.limits). No timing is asserted.
"""
from __future__ import annotations

import json
import os
import random
import signal
import textwrap
import threading

import pytest
import zmq

from gcircus.process_table import WidAllocator
from gcircus.stats.channel import StatsLoop, StatsPublisher
from gcircus.watcher import Watcher
from tests.support.control import Dealer
from tests.support.daemons import Daemon, circus_config, config_with_marker, daemon_with_fd_limit
from tests.support.processes import kill
from tests.support.waiting import wait_for

SLEEP = "/bin/sleep 1000"


# -- the wid bookkeeping -------------------------------------------------------------------------------------------

class P:
    def __init__(self, wid: int):
        self.wid = wid


def test_process_table_counts_wids_through_every_dict_method():
    wids = WidAllocator()
    running, retiring = wids.table(), wids.table()
    for pid in range(1, 6):
        running[100 + pid] = P(pid)
    assert wids.next_free() == 6
    retiring[103] = running.pop(103)  # retired: its wid still taken
    assert wids.next_free() == 6 and retiring.holds(3) and not running.holds(3)
    del retiring[103]
    assert wids.next_free() == 3
    running[101] = P(7)  # replacing a pid's process frees its old wid
    assert not running.holds(1) and wids.next_free() == 1
    running.setdefault(200, P(1))
    running.update({201: P(3)})
    assert wids.next_free() == 6
    running.popitem()
    running.clear()
    assert not running.wids and wids.next_free() == 1
    assert running.pop(999, None) is None
    with pytest.raises(KeyError):
        running.pop(999)


@pytest.fixture
def watcher():
    made = Watcher("big", SLEEP, numprocesses=300, graceful_timeout=5, check_flapping=False)
    yield made
    made.stop()


def wids_of(watcher: Watcher) -> list[int]:
    return sorted(p.wid for p in watcher.processes.values())


def test_wids_stay_unique_and_lowest_free_through_kills_decr_and_incr(watcher):
    watcher.start()
    assert wids_of(watcher) == list(range(1, 301))
    victims = random.Random(18).sample(sorted(watcher.processes.values(), key=lambda p: p.pid), 40)
    kill(p.pid for p in victims)
    wait_for(lambda: len(watcher.processes) == 300 and not {p.pid for p in victims} & set(watcher.processes), 60,
             message="the 40 killed processes replaced")
    watcher.settle(30)
    assert wids_of(watcher) == list(range(1, 301))  # each replacement took a freed wid, none twice
    oldest = sorted(watcher.processes.values())[:100]
    watcher.decr(100)
    watcher.settle(30)
    assert set(wids_of(watcher)) == set(range(1, 301)) - {p.wid for p in oldest}
    watcher.incr(100)
    watcher.settle(30)
    assert wids_of(watcher) == list(range(1, 301))


def test_kill_by_pid_stops_that_process_only(watcher):
    watcher.start()
    target = sorted(watcher.processes)[150]
    others = set(watcher.processes) - {target}
    watcher.kill(target, signal.SIGKILL)
    wait_for(lambda: len(watcher.processes) == 300, 30, message="the replacement")
    assert target not in watcher.processes and others <= set(watcher.processes)



def test_a_mass_stop_signals_every_process_before_it_handles_any_exit(watcher):
    """The exits of the first processes stopped wait until the last one got its signal: handled as they came, they
    shared the hub with the signals still to send and held them back."""
    watcher.start()
    pids = set(watcher.processes)
    events: list[tuple[str, int]] = []
    watcher.subscribe(lambda event: events.append((event.name, event.fields.get("process_pid"))))
    watcher.stop()
    kills = [i for i, (name, pid) in enumerate(events) if name == "kill" and pid in pids]
    reaps = [i for i, (name, pid) in enumerate(events) if name == "reap" and pid in pids]
    assert len(kills) == len(reaps) == 300
    assert max(kills) < min(reaps)

# -- the stats channel over budget -------------------------------------------------------------------------------

class Recorder(StatsPublisher):
    def __init__(self):
        super().__init__("ipc:///unused")
        self.sent: list[tuple[str, dict]] = []

    def publish(self, topic, payload):
        self.sent.append((topic, payload))


class SmallQuota(StatsLoop):
    """A loop whose processes cost more than its budget allows: 120 of them per tick."""

    def quota(self, total: int) -> int:
        return min(total, 120)


def test_stats_over_budget_sample_round_robin_and_totals_cover_every_process(watcher):
    watcher.start()
    publisher = Recorder()
    loop = SmallQuota(publisher, lambda: {"big": watcher.pids}, lambda: {os.getpid(): "circusd"})
    per_tick = []
    for _ in range(3):  # 301 processes (the watcher's and the supervisor), 120 per tick
        publisher.sent.clear()
        loop.sample_once()
        per_tick.append({int(t.rsplit(".", 1)[1]) for t, _ in publisher.sent if t.startswith("stat.big.")})
        assert loop.timing.sampled == 120
    assert not per_tick[0] & per_tick[1] and set().union(*per_tick) == set(watcher.pids)  # round robin: all in turn
    total = dict(publisher.sent)["stat.big"]
    assert sorted(total["pid"]) == sorted(watcher.pids)  # the totals cover every process, sampled now or before
    assert loop.timing.processes == 301


# -- gcircusd with a few hundred processes ------------------------------------------------------------------------

class Subscriber:
    """A SUB socket on the event channel, read by a thread into a list (topic, message), in arrival order."""

    def __init__(self, endpoint: str):
        self.socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.linger, self.socket.rcvhwm = 0, 0
        self.socket.setsockopt(zmq.SUBSCRIBE, b"watcher.")
        self.socket.connect(endpoint)
        self.events: list[tuple[str, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            if self.socket.poll(50):
                topic, body = self.socket.recv_multipart()
                self.events.append((topic.decode(), json.loads(body)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close(linger=0)


def big_daemon(tmp_path, daemon_factory, n: int) -> tuple[Daemon, str, str]:
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:work]
        cmd = {SLEEP}
        numprocesses = {n}
        graceful_timeout = 5

        [watcher:sync]
        cmd = {SLEEP}
        autostart = false
        """)
    pubsub = next(line.split("=", 1)[1].strip() for line in open(config) if line.startswith("pubsub_endpoint"))
    return daemon_factory(config), endpoint, pubsub


def test_events_of_a_mass_restart_arrive_complete_and_in_order(tmp_path, daemon_factory):
    daemon, endpoint, pubsub = big_daemon(tmp_path, daemon_factory, 300)
    dealer = Dealer(endpoint)
    subscriber = Subscriber(pubsub)
    try:
        wait_for(lambda: len(dealer.call("list", name="work").get("pids", [])) == 300, 60, message="300 running")
        # The subscription is live once an event sent after connecting arrives (earlier ones are lost by design).
        flips = iter(range(1_000_000))
        wait_for(lambda: dealer.call("set", name="sync", options={"graceful_timeout": 1 + next(flips) % 2}) and any(
            t == "watcher.sync.updated" for t, _ in subscriber.events), 30, interval=0.2, message="subscribed")
        old = set(dealer.call("list", name="work")["pids"])
        start = len(subscriber.events)
        dealer.call("restart", name="work", waiting=True)
        new = set(dealer.call("list", name="work")["pids"])
        dealer.call("set", name="sync", options={"graceful_timeout": 7})  # published after every restart event
        wait_for(lambda: sum(t == "watcher.sync.updated" for t, _ in subscriber.events[start:]), 30,
                 message="the marker event after the restart")
        events = [(t.split(".")[-1], m) for t, m in subscriber.events[start:] if t.startswith("watcher.work.")]
        order = {(name, m.get("process_pid")): i for i, (name, m) in enumerate(events)}
        assert all(("kill", pid) in order and ("reap", pid) in order for pid in old)  # complete
        assert all(order[("kill", pid)] < order[("reap", pid)] for pid in old)  # in order
        assert all(("spawn", pid) in order for pid in new) and [n for n, _ in events].count("spawn") == 300
        # A restart stops everything, then starts: every reap of an old process comes before the first spawn.
        assert max(order[("reap", pid)] for pid in old) < min(order[("spawn", pid)] for pid in new)
    finally:
        subscriber.close()
        dealer.close()


def test_control_channel_answers_while_a_large_start_is_under_way(tmp_path, daemon_factory):
    config, endpoint = circus_config(tmp_path, f"""
        [watcher:work]
        cmd = {SLEEP}
        numprocesses = 400
        graceful_timeout = 5
        """)
    dealer = Dealer(endpoint)  # connected before the daemon binds: the first request waits for it
    daemon_factory(config)
    try:
        counts = []
        while not counts or counts[-1] < 400:
            counts.append(len(dealer.call("list", name="work").get("pids", [])))
        assert any(0 < count < 400 for count in counts), counts  # answered between spawns, not after them
    finally:
        dealer.close()


# -- limits checked at start ---------------------------------------------------------------------------------------

def test_a_config_needing_more_fds_than_the_hard_limit_is_refused_naming_it(tmp_path):
    config, marker = config_with_marker(tmp_path, """
        [watcher:work]
        cmd = /bin/sleep 1000
        numprocesses = 200
        stdout_stream.class = FileStream
        stdout_stream.filename = out.log
        stderr_stream.class = FileStream
        stderr_stream.filename = err.log
        """)
    with daemon_with_fd_limit(tmp_path, config, 300) as (daemon, output):
        assert daemon.wait(30) == 1
    text = output()
    assert "cannot start: the configuration needs about 464 file descriptors" in text
    assert "watcher 'work': 200 × 2 (stdout pipe, stderr pipe)" in text and "RLIMIT_NOFILE is 300" in text
    assert "ulimit -Hn" in text
    assert not (tmp_path / "started").exists() and marker


def test_the_soft_fd_limit_is_raised_to_the_hard_limit_and_logged(tmp_path):
    config, _ = circus_config(tmp_path, f"[watcher:work]\ncmd = {SLEEP}\nnumprocesses = 1\n")
    with daemon_with_fd_limit(tmp_path, config, 256, hard=4096) as (daemon, output):
        wait_for(lambda: "gcircusd running" in output(), 30, message="gcircusd running")
        assert "raised the file descriptor limit (RLIMIT_NOFILE) from 256 to its hard limit 4096" in output()
        limits = open(f"/proc/{daemon.pid}/limits").read()
        assert any(line.startswith("Max open files") and line.split()[3:5] == ["4096", "4096"]
                   for line in limits.splitlines())


def test_more_processes_than_kernel_pid_max_are_refused_naming_the_sysctl(tmp_path, daemon_factory):
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    config, marker = config_with_marker(tmp_path, textwrap.dedent(f"""
        [watcher:work]
        cmd = /bin/sleep 1000
        numprocesses = {pid_max + 1}
        """))
    daemon = daemon_factory(config)
    assert daemon.wait(30) == 1
    text = daemon.output()
    assert f"the configuration needs {pid_max + 2} processes, but the kernel allows {pid_max} pids" in text
    assert "sysctl -w kernel.pid_max=N" in text
    assert not (tmp_path / "started").exists() and marker
