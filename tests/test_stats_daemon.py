"""The stats channel of a real gcircusd (`statsd = true`), gcircusd-stats against a daemon with statsd off, and
Circus's own StatsClient reading what gcircus publishes.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
import zmq.green as zmq
from gevent import subprocess as gsubprocess

from gcircus.client import CallError, Client
from tests.support.daemons import write_config
from tests.support.ports import free_port
from tests.support.processes import PYTHON
from tests.support.waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFO_FIELDS = {"mem_info1", "mem_info2", "cpu", "mem", "ctime", "pid", "username", "nice", "create_time", "age",
               "cmdline", "children", "subtopic", "name"}


class Reader:
    """Latest payload per stats topic, and arrival times, from a SUB socket."""

    def __init__(self, endpoint: str):
        self.socket = zmq.Context.instance().socket(zmq.SUB)
        self.socket.linger = 0
        self.socket.setsockopt(zmq.SUBSCRIBE, b"stat.")
        self.socket.connect(endpoint)
        self.latest: dict[str, dict] = {}
        self.arrivals: dict[str, list[float]] = {}

    def wait(self, predicate, timeout: float = 4.0, message: str = "stats") -> dict[str, dict]:
        def check():
            while self.socket.poll(0):
                topic, body = self.socket.recv_multipart()
                self.latest[topic.decode()] = json.loads(body)
                self.arrivals.setdefault(topic.decode(), []).append(time.monotonic())
            return predicate(self.latest)
        wait_for(check, timeout, interval=0.01, message=message)
        return self.latest

    def close(self) -> None:
        self.socket.close()


WATCHERS = """
[watcher:web]
cmd = /bin/sleep 3600
numprocesses = 2
graceful_timeout = 2

[watcher:Echo Upper]
cmd = /bin/sleep 3601
graceful_timeout = 2
"""


@pytest.fixture
def stats_daemon(tmp_path, daemon_factory, monkeypatch):
    """Start gcircusd on a config; return (daemon, endpoints) once both watchers run their processes."""
    def start(statsd: bool = True, interval: float = 0.2):
        ports = {name: free_port() for name in ("endpoint", "pubsub_endpoint", "stats_endpoint")}
        endpoints = {name: f"tcp://127.0.0.1:{port}" for name, port in ports.items()}
        # A stats_endpoint line turns stats on by itself (as in Circus), so a daemon with statsd off has none.
        lines = "\n".join(f"{name} = {value}" for name, value in endpoints.items()
                          if statsd or name != "stats_endpoint")
        config = write_config(tmp_path / "stats.ini", f"[circus]\n{lines}\nstatsd = {str(statsd).lower()}\n"
                                                      f"stats_interval = {interval}\n{WATCHERS}")
        daemon = daemon_factory(config)
        client = Client(endpoints["endpoint"], timeout=2, green=True)

        def ready():
            if daemon.proc.poll() is not None:
                raise AssertionError(f"gcircusd exited:\n{daemon.output()}")
            try:
                return all(len(client.call("list", name=w).get("pids", ())) == n for w, n in (("web", 2),
                                                                                              ("echo upper", 1)))
            except CallError:
                return False
        try:
            wait_for(ready, 10, interval=0.05, message="gcircusd running its watchers")
        finally:
            client.close()
        return daemon, endpoints
    return start


def call(endpoint: str, command: str, **props) -> dict:
    with Client(endpoint, timeout=3, green=True) as client:
        return client.call(command, check=True, **props)


def test_daemon_publishes_processes_watchers_and_itself(stats_daemon):
    daemon, endpoints = stats_daemon()
    web = call(endpoints["endpoint"], "list", name="web")["pids"]
    upper = call(endpoints["endpoint"], "list", name="echo upper")["pids"]
    reader = Reader(endpoints["stats_endpoint"])
    try:
        wanted = {*(f"stat.web.{pid}" for pid in web), "stat.web", f"stat.echo_upper.{upper[0]}", "stat.echo_upper",
                  f"stat.circus.{daemon.pid}", "stat.circus", "stat.sockets"}
        latest = reader.wait(lambda got: wanted <= set(got), message=f"topics {sorted(wanted)}")
    finally:
        reader.close()
    for pid in web:
        assert set(latest[f"stat.web.{pid}"]) == INFO_FIELDS
        assert latest[f"stat.web.{pid}"]["subtopic"] == pid and latest[f"stat.web.{pid}"]["name"] is None
    assert sorted(latest["stat.web"]["pid"]) == sorted(web)
    assert latest["stat.echo_upper"]["pid"] == upper
    assert latest[f"stat.circus.{daemon.pid}"]["name"] == "circusd"
    assert latest["stat.circus"]["pid"] == [daemon.pid]
    assert latest["stat.sockets"] == {"addresses": [], "reads": 0}


def test_daemon_honours_stats_interval(stats_daemon):
    _, endpoints = stats_daemon(interval=0.25)
    reader = Reader(endpoints["stats_endpoint"])
    try:
        reader.wait(lambda got: len(reader.arrivals.get("stat.web", [])) >= 6, message="6 samples")
    finally:
        reader.close()
    times = reader.arrivals["stat.web"][-5:]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Never sooner than the interval; later only by what a loaded machine adds, so the upper mark merely tells the
    # 0.25 s interval from the 1 s default.
    assert 0.2 < sum(gaps) / len(gaps) < 0.6, gaps


def test_daemon_stats_follow_spawns_and_reaps(stats_daemon):
    _, endpoints = stats_daemon()
    reader = Reader(endpoints["stats_endpoint"])
    try:
        call(endpoints["endpoint"], "incr", name="web", waiting=True)
        three = set(call(endpoints["endpoint"], "list", name="web")["pids"])
        assert len(three) == 3
        reader.wait(lambda got: set(got.get("stat.web", {}).get("pid", ())) == three, message="the spawned pid")
        victim = min(three)
        os.kill(victim, signal.SIGKILL)

        def replaced():
            pids = set(call(endpoints["endpoint"], "list", name="web")["pids"])
            return pids if len(pids) == 3 and victim not in pids else None
        after = wait_for(replaced, message="a replacement")
        latest = reader.wait(lambda got: set(got["stat.web"]["pid"]) == after, message="the reaped pid gone")
        assert f"stat.web.{(after - three).pop()}" in latest
    finally:
        reader.close()


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (its socket inodes, looked up in /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_statsd_off_binds_no_stats_endpoint(stats_daemon):
    daemon, endpoints = stats_daemon(statsd=False)
    expected = {int(endpoints[name].rsplit(":", 1)[1]) for name in ("endpoint", "pubsub_endpoint")}
    assert listening_ports(daemon.pid) == expected  # not the default stats endpoint either


def test_circus_stats_client_reads_gcircusd_stats(stats_daemon):
    from circus.stats.client import StatsClient

    daemon, endpoints = stats_daemon()
    web = set(call(endpoints["endpoint"], "list", name="web")["pids"])
    Reader(endpoints["stats_endpoint"]).wait(lambda got: "stat.web" in got, message="stats flowing")
    client = StatsClient(endpoints["stats_endpoint"])
    seen: dict[tuple[str, str | None], dict] = {}
    deadline = time.monotonic() + 4
    wanted = {("web", str(pid)) for pid in web} | {("web", None), ("circus", str(daemon.pid)), ("circus", None)}
    for watcher, subtopic, stat in client:  # a plain zmq consumer: it blocks only until the next sample
        seen[(watcher, subtopic)] = stat
        if wanted <= set(seen) or time.monotonic() > deadline:
            break
    assert wanted <= set(seen)
    assert seen[("circus", str(daemon.pid))]["name"] == "circusd"
    assert set(seen[("web", None)]["pid"]) == web


def test_gcircusd_stats_against_a_daemon_with_statsd_off(stats_daemon, tmp_path):
    daemon, endpoints = stats_daemon(statsd=False)
    statspoint = f"ipc://{tmp_path}/gcircusd-stats.sock"
    proc = gsubprocess.Popen([PYTHON, "-m", "gcircus.cli.gcircusd_stats", "--endpoint", endpoints["endpoint"],
                              "--pubsub", endpoints["pubsub_endpoint"], "--statspoint", statspoint,
                              "--interval", "0.2", "--log-level", "debug"],
                             stdout=gsubprocess.PIPE, stderr=gsubprocess.STDOUT)
    reader = Reader(statspoint)
    try:
        web = set(call(endpoints["endpoint"], "list", name="web")["pids"])
        upper = call(endpoints["endpoint"], "list", name="echo upper")["pids"]
        latest = reader.wait(lambda got: set(got.get("stat.web", {}).get("pid", ())) == web
                             and got.get("stat.echo_upper", {}).get("pid") == upper, message="the initial pids")
        assert set(latest[f"stat.web.{min(web)}"]) == INFO_FIELDS
        circus = reader.wait(lambda got: len(got.get("stat.circus", {}).get("pid", ())) == 2)
        assert circus[f"stat.circus.{daemon.pid}"]["name"] == "circusd"
        assert circus[f"stat.circus.{proc.pid}"]["name"] == "circusd-stats"
        call(endpoints["endpoint"], "incr", name="web", waiting=True)
        three = set(call(endpoints["endpoint"], "list", name="web")["pids"])
        reader.wait(lambda got: set(got["stat.web"]["pid"]) == three, message="the spawned pid, from its event")
        call(endpoints["endpoint"], "decr", name="web", waiting=True)
        two = set(call(endpoints["endpoint"], "list", name="web")["pids"])
        reader.wait(lambda got: set(got["stat.web"]["pid"]) == two, message="the killed pid gone")
        call(endpoints["endpoint"], "stop", name="web", waiting=True)
        reader.wait(lambda got: got["stat.web"]["pid"] == [], message="a stopped watcher, empty")
    finally:
        reader.close()
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode == 0, output
    assert not os.path.exists(statspoint[len("ipc://"):])


def test_gcircusd_stats_refuses_a_public_statspoint():
    proc = gsubprocess.run([PYTHON, "-m", "gcircus.cli.gcircusd_stats", "--statspoint",
                            f"tcp://0.0.0.0:{free_port()}"], capture_output=True, timeout=10)
    assert proc.returncode == 1
    assert b"allow_remote_endpoints" in proc.stderr

