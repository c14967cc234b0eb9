"""The event channel end to end: a real gcircusd, a real SUB socket on its PUB endpoint (PROTOCOL.md 3).

Every sequence of PROTOCOL.md 3.3 is checked as gcircus publishes it, which is Circus's sequence plus the reaps
Circus forgets (section 8 item 26): every process that ends gets a `reap` with its exit code (or -signal), also
the ones gcircusd kills itself (stop, decr, kill, max_age, reload, quit).

How the tests stay exact without sleeping:

* Each daemon also runs a stopped watcher `sync` whose only job is to publish `updated` when it is `set`. A
  subscription is live once one of those arrives; events published before it are lost by design (PUB/SUB).
* `Rig.sync()` sets `sync` again and waits for that `updated` (recognised by a `time` not older than the request):
  the PUB socket is one ordered stream, so everything the daemon published before it has been received. That is
  how "nothing else came" is checked without waiting for a timeout.
* Every event received is checked against the payload schema of PROTOCOL.md 3.2 (exact keys and types).
"""
from __future__ import annotations

import json
import os
import queue
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import gevent
import pytest

from gcircus.client import Client
from gcircus.consumer import Consumer
from gcircus.events import EVENTS, frames
from gcircus.watcher import Watcher
from tests.support.ports import free_port
from tests.support.processes import alive, handles
from tests.support.waiting import wait_for

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
SLEEP = "/bin/sleep 1000"
# A child that ignores SIGTERM (only SIGKILL ends it).
DEAF = f"{PY} -c \"import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)\""
# A child that exits with status 7 on SIGUSR1.
EXIT7_ON_USR1 = (f"{PY} -c \"import os,signal,time; signal.signal(signal.SIGUSR1, lambda *a: os._exit(7)); "
                 f"time.sleep(1000)\"")

TIME_ONLY = frozenset({"time"})
SCHEMA = {
    "spawn": frozenset({"process_pid", "time"}),
    "reap": frozenset({"process_pid", "time", "exit_code"}),
    "kill": frozenset({"process_pid", "time"}),
    "start": TIME_ONLY, "stop": TIME_ONLY, "reload": TIME_ONLY, "updated": TIME_ONLY,
    "add": TIME_ONLY, "remove": TIME_ONLY,
    "hook_success": frozenset({"name", "time"}),
    "hook_failure": frozenset({"name", "time", "error"}),
}
# gcircus's lifecycle events (README "Readiness, health and dependencies"), beside Circus's sequences.
LIFECYCLE_SCHEMA = {
    "state": frozenset({"state", "previous", "reason", "time"}),
    "ready": frozenset({"process_pid", "wid", "time"}),
    "not_ready": frozenset({"process_pid", "wid", "detail", "time"}),
    "unhealthy": frozenset({"process_pid", "wid", "detail", "time"}),
}


def check_payload(topic: str, msg: dict) -> None:
    """The payload of PROTOCOL.md 3.2 for this topic's event: exactly those keys, with those types."""
    parts = topic.split(".")
    assert len(parts) == 3 and parts[0] == "watcher", topic
    event = parts[2]
    schema = {**SCHEMA, **LIFECYCLE_SCHEMA}
    assert event in schema, f"unknown event {topic}"
    assert set(msg) == schema[event], f"{topic}: keys {sorted(msg)}, expected {sorted(schema[event])}"
    assert type(msg["time"]) is float, f"{topic}: time {msg['time']!r}"
    assert abs(msg["time"] - time.time()) < 60, f"{topic}: time {msg['time']} is not now"
    if "process_pid" in msg:
        assert type(msg["process_pid"]) is int and msg["process_pid"] > 0, f"{topic}: {msg}"
    if event == "reap":
        assert msg["exit_code"] is None or type(msg["exit_code"]) is int, f"{topic}: {msg}"
    if "name" in msg:
        assert isinstance(msg["name"], str) and msg["name"], f"{topic}: {msg}"
    if "error" in msg:
        assert isinstance(msg["error"], str), f"{topic}: {msg}"


class Events:
    """What one SUB socket received, in order, as (topic, message) with the message parsed and checked: Circus's
    events in `seen`, gcircus's lifecycle events in `lifecycle`."""

    def __init__(self, endpoint: str, topics=(b"watcher.",)):
        self.consumer = Consumer(list(topics), endpoint)
        self.seen: list[tuple[str, dict]] = []
        self.lifecycle: list[tuple[str, dict]] = []

    def pull(self, timeout: float) -> bool:
        event = self.consumer.recv(timeout)
        if event is None:
            return False
        topic, body = event[0].decode(), json.loads(event[1])
        check_payload(topic, body)
        (self.lifecycle if topic.split(".")[2] in LIFECYCLE_SCHEMA else self.seen).append((topic, body))
        return True

    def until(self, predicate, timeout: float = 4.0, what: str = "events"):
        """Receive until `predicate(seen)` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self.seen)
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; received: {self.short()}")
            self.pull(remaining)

    def short(self, start: int = 0) -> list[str]:
        return [f"{t.split('.', 1)[1]}{'(' + str(m['process_pid']) + ')' if 'process_pid' in m else ''}"
                for t, m in self.seen[start:]]

    def close(self) -> None:
        self.consumer.close()


def of(events: list[tuple[str, dict]], watcher: str) -> list[tuple[str, dict]]:
    """The (event, message) pairs of one watcher's topics."""
    prefix = f"watcher.{watcher}."
    return [(t[len(prefix):], m) for t, m in events if t.startswith(prefix)]


def names(pairs) -> list[str]:
    return [e for e, _ in pairs]


def pids(pairs, event: str) -> list[int]:
    return [m["process_pid"] for e, m in pairs if e == event]


class Rig:
    """A gcircusd on a config with the `sync` watcher, a Client, and a live subscription (`events`)."""

    def __init__(self, tmp_path, daemon_factory, watchers: str, topics=(b"watcher.",)):
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.pubsub = f"tcp://127.0.0.1:{free_port()}"
        config = tmp_path / "circus.ini"
        config.write_text(
            f"[circus]\nendpoint = {self.endpoint}\npubsub_endpoint = {self.pubsub}\n\n"
            "[watcher:sync]\ncmd = /bin/sleep 1000\nnumprocesses = 0\nautostart = false\n\n"
            + textwrap.dedent(watchers))
        self.daemon = daemon_factory(str(config), cwd=str(REPO))  # cwd: hook configs import tests.support.hookfuncs
        self.client = Client(self.endpoint, timeout=10)
        wait_for(lambda: "gcircusd running" in self.daemon.output() or self.daemon.proc.poll() is not None,
                 message="gcircusd running")
        assert self.daemon.proc.poll() is None, self.daemon.output()
        self._syncs = 0
        self.events = self.subscribe(topics)

    def call(self, command: str, **props) -> dict:
        return self.client.call(command, check=True, **props)

    def _set_sync(self) -> float:
        self._syncs += 1
        sent = time.time()
        self.call("set", name="sync", options={"graceful_timeout": 1 + self._syncs % 2})
        return sent

    @staticmethod
    def _synced(sent: float):
        return lambda seen: any(t == "watcher.sync.updated" and m["time"] >= sent for t, m in seen)

    def subscribe(self, topics=(b"watcher.",)) -> Events:
        """A new SUB socket, returned once an `updated` of `sync` proved its subscription live."""
        events = Events(self.pubsub, list(topics) + [b"watcher.sync.updated"])
        deadline = time.monotonic() + 4
        while True:
            sent = self._set_sync()
            try:
                events.until(self._synced(sent), 0.1, "a first event")
                return events
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def sync(self, events: Events | None = None) -> None:
        """Return once `events` has received everything the daemon published before this call."""
        events = events or self.events
        sent = self._set_sync()
        events.until(self._synced(sent), what="the sync event")

    def mark(self) -> int:
        return len(self.events.seen)

    def since(self, mark: int, watcher: str = "w") -> list[tuple[str, dict]]:
        return of(self.events.seen[mark:], watcher)

    def wait(self, mark: int, predicate, watcher: str = "w", timeout: float = 4.0, what: str = "events"):
        return self.events.until(lambda seen: predicate(of(seen[mark:], watcher)), timeout, what)

    def pids(self, name: str = "w") -> list[int]:
        return sorted(int(p) for p in self.call("list", name=name)["pids"])

    def close(self) -> None:
        self.events.close()
        self.client.close()


@pytest.fixture
def rig(tmp_path, daemon_factory):
    made: list[Rig] = []

    def make(watchers: str, **kwargs) -> Rig:
        r = Rig(tmp_path, daemon_factory, watchers, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def watcher(name: str = "w", cmd: str = SLEEP, n: int = 3, extra: str = "") -> str:
    extra = textwrap.dedent(extra)
    if "graceful_timeout" not in extra:
        extra += "graceful_timeout = 3\n"
    return f"[watcher:{name}]\ncmd = {cmd}\nnumprocesses = {n}\n{extra}\n"


def assert_stop_sequence(pairs, old: list[int], exit_code: int = -signal.SIGTERM) -> None:
    """kill × n, reap × n (each with `exit_code`), stop — the kills all before the first reap."""
    n = len(old)
    assert names(pairs) == ["kill"] * n + ["reap"] * n + ["stop"], names(pairs)
    assert sorted(pids(pairs, "kill")) == sorted(old)
    assert sorted(pids(pairs, "reap")) == sorted(old)
    assert [m["exit_code"] for e, m in pairs if e == "reap"] == [exit_code] * n


def assert_start_sequence(pairs, n: int) -> list[int]:
    """spawn × n, start; returns the new pids."""
    assert names(pairs) == ["spawn"] * n + ["start"], names(pairs)
    new = pids(pairs, "spawn")
    assert len(set(new)) == n
    return new


# -- the sequences of PROTOCOL.md 3.3 ---------------------------------------------------------------------------


def test_stop_is_kill_each_then_reap_each_then_stop(rig):
    r = rig(watcher(n=3))
    old = r.pids()
    mark = r.mark()
    r.call("stop", name="w", waiting=True)
    r.sync()
    assert_stop_sequence(r.since(mark), old)
    assert not any(alive(p) for p in old)


def test_stop_past_graceful_timeout_is_kill_kill_reap_minus_9(rig):
    r = rig(watcher(cmd=DEAF, n=1, extra="graceful_timeout = 0.3\n"))
    [pid] = wait_for(lambda: len(r.pids()) == 1 and r.pids())
    wait_for(lambda: handles(pid, signal.SIGTERM), message="SIGTERM ignored by the child")
    mark = r.mark()
    r.call("stop", name="w", waiting=True)
    r.sync()
    pairs = r.since(mark)
    assert names(pairs) == ["kill", "kill", "reap", "stop"]
    assert pids(pairs, "kill") == [pid, pid] and pids(pairs, "reap") == [pid]
    assert pairs[2][1]["exit_code"] == -signal.SIGKILL
    # The SIGKILL came after the graceful timeout, and the reap after the SIGKILL.
    assert pairs[1][1]["time"] - pairs[0][1]["time"] >= 0.25
    assert pairs[2][1]["time"] >= pairs[1][1]["time"]


def test_start_is_spawn_each_then_start(rig):
    r = rig(watcher(n=3, extra="autostart = false\n"))
    mark = r.mark()
    r.call("start", name="w", waiting=True)
    r.sync()
    new = assert_start_sequence(r.since(mark), 3)
    assert sorted(new) == r.pids()


def test_restart_is_the_stop_sequence_then_the_start_sequence(rig):
    r = rig(watcher(n=2))
    old = r.pids()
    mark = r.mark()
    r.call("restart", name="w", waiting=True)
    r.sync()
    pairs = r.since(mark)
    assert_stop_sequence(pairs[:5], old)
    new = assert_start_sequence(pairs[5:], 2)
    assert not set(new) & set(old) and sorted(new) == r.pids()


def test_graceful_reload_spawns_the_new_then_kills_and_reaps_the_old(rig):
    r = rig(watcher(n=3))
    old = r.pids()
    mark = r.mark()
    r.call("reload", name="w", waiting=True)
    r.sync()
    pairs = r.since(mark)
    assert names(pairs) == ["spawn"] * 3 + ["kill"] * 3 + ["reap"] * 3 + ["reload"], names(pairs)
    new = pids(pairs, "spawn")
    assert sorted(new) == r.pids() and not set(new) & set(old)
    assert sorted(pids(pairs, "kill")) == old
    assert sorted(pids(pairs, "reap")) == old  # Circus publishes no reap here (PROTOCOL.md 8, item 26)
    assert all(m["exit_code"] == -signal.SIGTERM for e, m in pairs if e == "reap")


def test_sequential_reload_replaces_one_process_at_a_time(rig):
    r = rig(watcher(n=3))
    old = r.pids()
    mark = r.mark()
    r.call("reload", name="w", sequential=True, waiting=True)
    r.sync()
    pairs = r.since(mark)
    assert names(pairs) == ["kill", "reap", "spawn"] * 3 + ["reload"], names(pairs)
    for i in range(3):
        (_, kill), (_, reap), (_, spawn) = pairs[3 * i: 3 * i + 3]
        assert kill["process_pid"] == reap["process_pid"] and kill["process_pid"] in old
        assert reap["exit_code"] == -signal.SIGTERM
        assert spawn["process_pid"] not in old
    assert sorted(pids(pairs, "kill")) == old
    assert sorted(pids(pairs, "spawn")) == r.pids()


def test_decr_kills_and_reaps_the_oldest_and_spawns_nothing(rig):
    r = rig(watcher(n=2))
    old = r.pids()
    mark = r.mark()
    r.call("incr", name="w", waiting=True)
    r.sync()
    pairs = r.since(mark)
    assert names(pairs) == ["spawn"]
    [newest] = pids(pairs, "spawn")
    mark = r.mark()
    reply = r.call("decr", name="w", waiting=True)
    assert reply["numprocesses"] == 2
    r.sync()
    pairs = r.since(mark)
    assert names(pairs) == ["kill", "reap"], names(pairs)  # Circus: kill only
    [victim] = pids(pairs, "kill")
    assert pids(pairs, "reap") == [victim] and victim in old and victim != newest
    assert pairs[1][1]["exit_code"] == -signal.SIGTERM
    assert r.pids() == sorted(set(old + [newest]) - {victim})


def test_kill_command_is_kill_reap_then_the_replacement_spawn(rig):
    r = rig(watcher(n=2))
    old = r.pids()
    mark = r.mark()
    r.call("kill", name="w", pid=old[0], waiting=True)
    r.sync()
    pairs = r.since(mark)
    assert names(pairs) == ["kill", "reap", "spawn"], names(pairs)  # Circus: kill, then spawn on its next tick
    assert pids(pairs, "kill") == pids(pairs, "reap") == [old[0]]
    assert pairs[1][1]["exit_code"] == -signal.SIGTERM
    [replacement] = pids(pairs, "spawn")
    assert r.pids() == sorted([old[1], replacement])


def test_kill_command_with_signum_reaps_with_that_signal(rig):
    r = rig(watcher(n=1))
    [pid] = r.pids()
    mark = r.mark()
    r.call("kill", name="w", pid=pid, signum="SIGINT", waiting=True)
    r.sync()
    pairs = r.since(mark)
    assert names(pairs) == ["kill", "reap", "spawn"], names(pairs)
    assert pairs[1][1] == {**pairs[1][1], "process_pid": pid, "exit_code": -signal.SIGINT}


def test_max_age_spawns_the_replacement_first_then_kills_and_reaps_the_old(rig):
    r = rig(watcher(n=1, extra="max_age = 1\nmax_age_variance = 0\n"))
    mark = r.mark()

    def first_cycle(pairs):
        starts = [i for i, (e, _) in enumerate(pairs) if e == "spawn"]
        return starts and len(pairs) >= starts[0] + 3 and pairs[starts[0]:starts[0] + 3]

    cycle = r.wait(mark, first_cycle, timeout=30, what="a max_age replacement")
    assert names(cycle) == ["spawn", "kill", "reap"], names(cycle)
    new, old = cycle[0][1]["process_pid"], cycle[1][1]["process_pid"]
    assert new != old and cycle[2][1]["process_pid"] == old  # Circus: no reap for the expired one
    assert cycle[2][1]["exit_code"] == -signal.SIGTERM
    assert not alive(old)


def test_natural_death_is_reaped_with_its_exit_code_then_replaced(rig):
    # check_flapping off: the second death follows the first within a second, which would count as flapping.
    r = rig(watcher(cmd=EXIT7_ON_USR1, n=1, extra="check_flapping = false\n"))
    [pid] = wait_for(lambda: len(r.pids()) == 1 and r.pids())
    wait_for(lambda: handles(pid, signal.SIGUSR1), message="the child's SIGUSR1 handler")
    mark = r.mark()
    os.kill(pid, signal.SIGUSR1)
    pairs = r.wait(mark, lambda p: len(p) >= 2 and p, what="reap and spawn")
    assert names(pairs[:2]) == ["reap", "spawn"], names(pairs)
    assert pairs[0][1]["process_pid"] == pid and pairs[0][1]["exit_code"] == 7
    [second] = pids(pairs, "spawn")
    assert second != pid
    # A signal death: exit_code is minus the signal number. No `kill` event: gcircusd sent nothing.
    wait_for(lambda: second in r.pids())
    mark = r.mark()
    os.kill(second, signal.SIGKILL)
    r.wait(mark, lambda p: "spawn" in names(p), what="the second replacement")
    r.sync()
    pairs = r.since(mark)
    assert names(pairs) == ["reap", "spawn"], names(pairs)
    assert pairs[0][1]["process_pid"] == second and pairs[0][1]["exit_code"] == -signal.SIGKILL


def test_quit_kills_everything_then_reaps_and_stops_each_watcher(rig):
    r = rig(watcher("a", n=2) + watcher("b", n=2))
    a, b = r.pids("a"), r.pids("b")
    mark = r.mark()
    r.call("quit", waiting=True)
    seen = r.events.until(lambda s: ({"watcher.a.stop", "watcher.b.stop"} <= {t for t, _ in s[mark:]}) and s[mark:],
                          what="both stop events")
    assert r.daemon.wait(10) == 0
    # Same priority: both are stopped at once, so all four kills come first (as in Circus).
    assert [t.rsplit(".", 1)[1] for t, _ in seen[:4]] == ["kill"] * 4, r.events.short(mark)
    for name, old in (("a", a), ("b", b)):
        pairs = of(seen, name)
        assert_stop_sequence(pairs, old)
    assert not any(alive(p) for p in a + b)


# -- hooks, add/rm, set -----------------------------------------------------------------------------------------


def test_spawn_time_is_the_process_started_time(rig):
    """PROTOCOL.md 3.2: the spawn event's `time` is `process.started`, the `started` that `stats` reports."""
    r = rig(watcher(n=1))
    mark = r.mark()
    r.call("incr", name="w", waiting=True)
    r.sync()
    [(event, msg)] = r.since(mark)
    assert event == "spawn"
    info = r.call("stats", name="w", process=msg["process_pid"])["info"]
    assert info["started"] == msg["time"]


def test_hook_success_for_after_spawn_comes_before_its_spawn(rig):
    r = rig(watcher(n=1, extra="""
        hooks.before_spawn = tests.support.hookfuncs.record
        hooks.after_spawn = tests.support.hookfuncs.record
        hooks.before_reap = tests.support.hookfuncs.explode
        """))
    mark = r.mark()
    r.call("incr", name="w", waiting=True)
    r.sync()
    pairs = r.since(mark)
    assert names(pairs) == ["hook_success", "hook_success", "spawn"], names(pairs)
    assert [m["name"] for _, m in pairs[:2]] == ["before_spawn", "after_spawn"]
    [pid] = pids(pairs, "spawn")
    # A hook that raises: hook_failure with the error's text; the reap still comes (before_reap's failure is
    # reported, nothing more).
    mark = r.mark()
    r.call("kill", name="w", pid=pid, waiting=True)
    r.sync()
    pairs = r.since(mark)
    assert names(pairs) == ["kill", "hook_failure", "reap", "hook_success", "hook_success", "spawn"], names(pairs)
    assert pairs[1][1]["name"] == "before_reap" and pairs[1][1]["error"] == "hook exploded"
    assert pairs[2][1]["process_pid"] == pid


def test_add_and_rm_publish_add_and_remove(rig):
    r = rig(watcher(n=1))
    mark = r.mark()
    r.call("add", name="extra", cmd="/bin/sleep", args=["1000"], start=True, waiting=True)
    r.sync()
    pairs = r.since(mark, "extra")
    assert names(pairs) == ["add", "spawn", "start"], names(pairs)
    [pid] = pids(pairs, "spawn")
    mark = r.mark()
    r.call("rm", name="extra", waiting=True)
    r.sync()
    pairs = r.since(mark, "extra")
    assert names(pairs) == ["remove", "kill", "reap", "stop"], names(pairs)
    assert pids(pairs, "kill") == pids(pairs, "reap") == [pid]
    assert r.since(mark, "w") == []


def test_set_publishes_updated_for_each_option(rig):
    r = rig(watcher(n=1))
    mark = r.mark()
    r.call("set", name="w", options={"graceful_timeout": 2}, waiting=True)
    r.sync()
    assert names(r.since(mark)) == ["updated"]
    mark = r.mark()
    r.call("set", name="w", options={"numprocesses": 2}, waiting=True)
    r.sync()
    assert names(r.since(mark)) == ["updated", "spawn"]


# -- topics -----------------------------------------------------------------------------------------------------


def test_topics_use_the_res_name(rig):
    r = rig(watcher("Echo Upper", n=1), topics=(b"watcher.echo_upper.",))
    mark = r.mark()
    r.call("incr", name="echo upper", waiting=True)
    r.call("decr", name="Echo Upper", waiting=True)
    r.sync()
    topics = [t for t, _ in r.events.seen[mark:] if t != "watcher.sync.updated"]
    assert topics == ["watcher.echo_upper.spawn", "watcher.echo_upper.kill", "watcher.echo_upper.reap"]


def test_a_topic_prefix_selects_events(rig):
    r = rig(watcher("w", n=1) + watcher("other", n=1), topics=(b"watcher.w.reap",))
    [pid] = r.pids("w")
    mark = r.mark()
    r.call("kill", name="other", waiting=True)
    r.call("kill", name="w", waiting=True)
    r.sync()
    got = [(t, m["process_pid"]) for t, m in r.events.seen[mark:] if t != "watcher.sync.updated"]
    assert got == [("watcher.w.reap", pid)]


# -- consumers --------------------------------------------------------------------------------------------------


def test_circus_consumer_reads_gcircus_events_unchanged(rig):
    from circus.consumer import CircusConsumer

    r = rig(watcher(n=2))
    consumer = CircusConsumer([b"watcher."], endpoint=r.pubsub, timeout=0.1)
    received: queue.Queue = queue.Queue()
    done = threading.Event()

    def read():  # CircusConsumer blocks (plain zmq): a thread of its own, as a Circus plugin process would
        for topic, message in consumer:
            received.put((topic, message))
            if done.is_set():
                break  # closing the iterator destroys the consumer's context

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    got: list = []

    def drain_until(predicate, what, timeout=30.0):
        def check():
            while True:
                try:
                    got.append(received.get_nowait())
                except queue.Empty:
                    return predicate()
        wait_for(check, timeout, message=what)

    try:
        def live():  # the subscription is live once a sync event gets through
            sent = r._set_sync()
            try:
                drain_until(lambda: any(t == b"watcher.sync.updated" and json.loads(m)["time"] >= sent
                                        for t, m in got), "the first event", 0.1)
                return True
            except AssertionError:
                return False
        wait_for(live, 30, message="a live CircusConsumer")
        old = r.pids()
        start = len(got)
        r.call("stop", name="w", waiting=True)
        drain_until(lambda: any(t == b"watcher.w.stop" for t, _ in got[start:]), "the stop event")
        frames = [(t, m) for t, m in got[start:] if t.startswith(b"watcher.w.")]
        assert all(isinstance(t, bytes) and isinstance(m, bytes) for t, m in frames)
        decoded = [(t.decode().rsplit(".", 1)[1], json.loads(m)) for t, m in frames]
        # Circus's consumer receives gcircus's lifecycle events too (a Circus plugin ignores what it does not know).
        assert [e for e, _ in decoded if e in LIFECYCLE_SCHEMA] == ["state", "state"]  # stopping, then stopped
        assert_stop_sequence([(e, m) for e, m in decoded if e not in LIFECYCLE_SCHEMA], old)
    finally:
        done.set()
        r._set_sync()  # one more event, so the reader notices `done`
        reader.join(5)
    assert not reader.is_alive()


def test_gcircus_consumer_iterates_topic_and_message(rig):
    r = rig(watcher(n=1))
    with Consumer([b"watcher.w.", b"watcher.sync."], r.pubsub, timeout=0.05) as consumer:
        deadline = time.monotonic() + 30
        while True:  # live once a sync event arrives
            sent = r._set_sync()
            event = consumer.wait_for(b"watcher.sync.updated", 0.1)
            if event is not None and json.loads(event[1])["time"] >= sent:
                break
            assert time.monotonic() < deadline, "no event came"
        [pid] = r.pids()
        r.call("kill", name="w", waiting=True)
        got = []
        with gevent.Timeout(30):
            for topic, message in consumer:
                assert isinstance(topic, bytes) and isinstance(message, bytes)
                got.append((topic, json.loads(message)))
                if topic == b"watcher.w.spawn":
                    consumer.stop()
        got = [(t, m) for t, m in got if not t.startswith(b"watcher.sync.")]
        assert [t for t, _ in got] == [b"watcher.w.kill", b"watcher.w.reap", b"watcher.w.spawn"]
        assert got[1][1]["process_pid"] == pid and got[1][1]["exit_code"] == -signal.SIGTERM


def test_an_event_is_declared_or_refused_where_it_is_made():
    """gcircus.events.EVENTS is the one list of events: a misspelt event or field fails at the notify, not later."""
    watcher = Watcher("Echo Upper", "/bin/true")
    seen: list = []
    watcher.subscribe(seen.append)
    with pytest.raises(ValueError, match="EVENTS"):
        watcher.notify("spwan", process_pid=1)
    with pytest.raises(ValueError, match="EVENTS"):
        watcher.notify("spawn", pid=1)
    with pytest.raises(ValueError, match="EVENTS"):
        watcher.notify("reap", process_pid=1)  # exit_code is missing
    assert seen == []
    watcher.notify("reap", process_pid=5, time=1.5, exit_code=-9)
    assert frames(seen[0]) == [b"watcher.echo_upper.reap", b'{"time": 1.5, "process_pid": 5, "exit_code": -9}']
    assert set(SCHEMA) | set(LIFECYCLE_SCHEMA) <= set(EVENTS)
    assert all(EVENTS[name].fields | {"time"} == keys for name, keys in {**SCHEMA, **LIFECYCLE_SCHEMA}.items())
