"""More of the issue's bar for `gcircusctl upgrade`, against a real gcircusd: a subscriber keeps receiving events
across the exec, a max_age deadline keeps its time, a child that exits during the exec is reaped with its status."""
from __future__ import annotations

import json
import time

from gevent import subprocess as gsubprocess

from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.waiting import wait_for

MAX_AGE = 6.0
SLEEPER = """
    [watcher:sl]
    cmd = sleep 1000
    graceful_timeout = 2
    """


def upgrade(running) -> gsubprocess.CompletedProcess:
    return gsubprocess.run([*GCIRCUSCTL, "--endpoint", running.endpoint, "upgrade"], capture_output=True,
                           text=True, timeout=90, env=ctl_env())


def next_event(consumer, topic: str, timeout: float = 30.0) -> dict:
    event = consumer.wait_for(topic, timeout)
    assert event is not None, f"no {topic} event within {timeout}s"
    return json.loads(event[1])


def subscribed(running, watcher: str, topic: str | None = None):
    """A consumer of `watcher`'s events (or of `topic`) whose subscription has reached the daemon (a restart's spawn
    got through)."""
    consumer = running.consumer(topic or f"watcher.{watcher}.")
    wait_for(lambda: running.call("restart", name=watcher, waiting=True) and consumer.wait_for(
        f"watcher.{watcher}.spawn", 1) is not None, timeout=30, message="a spawn event before the upgrade")
    return consumer


def test_a_subscriber_receives_events_after_an_upgrade(gcircusd):
    running = gcircusd(SLEEPER)
    with subscribed(running, "sl") as consumer:
        done = upgrade(running)
        assert done.returncode == 0, done.stderr
        pid = running.pids("sl")[0]
        # The subscriber reconnects by itself (zmq), in its own time (its reconnect interval, later under load);
        # the new image holds its events back until it is back. Then a restart's events reach it, without the
        # subscriber having done anything.
        wait_for(lambda: running.call("set", name="sl", options={"graceful_timeout": 2}) and consumer.wait_for(
            "watcher.sl.updated", 0.5) is not None, timeout=30, message="the subscription live again")
        running.call("restart", name="sl", waiting=True)
        spawned = next_event(consumer, "watcher.sl.spawn")
        assert spawned["process_pid"] in running.pids("sl") and spawned["process_pid"] != pid


def collect(running, consumer, wanted: set[str], timeout: float = 30.0) -> dict[str, dict]:
    """The first event of each topic in `wanted` (others skipped), all of them within `timeout` seconds."""
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while not wanted <= seen.keys() and (remaining := deadline - time.monotonic()) > 0:
        event = consumer.recv(remaining)
        if event is not None and event[0].decode() in wanted:
            seen.setdefault(event[0].decode(), json.loads(event[1]))
    assert wanted <= seen.keys(), f"missing events: {sorted(wanted - seen.keys())}\n{running.daemon.output()}"
    return seen


def test_a_subscriber_receives_the_upgrade_event_and_the_reap_of_a_child_lost_meanwhile(gcircusd, tmp_path):
    trigger = tmp_path / "exit-now"
    running = gcircusd(f"""
        [watcher:sl]
        cmd = sleep 1000
        graceful_timeout = 2

        [watcher:quitter]
        cmd = sh -c 'while [ ! -e {trigger} ]; do sleep 0.005; done; rm {trigger}; exit 7'
        graceful_timeout = 2
        """)
    (row,) = running.call("procs", name="quitter")["processes"]
    with subscribed(running, "sl", topic="watcher.") as consumer:
        def upgrade():
            return gsubprocess.Popen([*GCIRCUSCTL, "--endpoint", running.endpoint, "upgrade"], stdout=gsubprocess.PIPE,
                                     stderr=gsubprocess.PIPE, text=True, env=ctl_env())
        proc = upgrade()
        wait_for(lambda: "handing over to a new image" in running.daemon.output() or proc.poll() is not None,
                 timeout=60, message="the hand-over beginning")
        trigger.touch()  # the child exits during the hand-over: its reap is published by one image or the other
        out, err = proc.communicate(timeout=90)
        # Refused while the old image was still handling that exit (a busy watcher): it said to try again.
        deadline = time.monotonic() + 60
        while proc.returncode == 3 and "watchers are busy" in err and time.monotonic() < deadline:
            proc = upgrade()
            out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        seen = collect(running, consumer, {"watcher.sl.upgrade", "watcher.quitter.upgrade", "watcher.quitter.reap"})
    upgraded = seen["watcher.sl.upgrade"]
    assert upgraded["old_version"] and upgraded["new_version"] and upgraded["new_version"] in out
    assert seen["watcher.quitter.reap"]["process_pid"] == row["pid"]
    assert seen["watcher.quitter.reap"]["exit_code"] == 7


def test_a_max_age_deadline_keeps_its_time_across_an_upgrade(gcircusd):
    running = gcircusd(f"""
        [watcher:aged]
        cmd = sleep 1000
        max_age = {MAX_AGE}
        max_age_variance = 0
        graceful_timeout = 2
        """)
    (row,) = running.call("procs", name="aged")["processes"]
    deadline = row["started"] + MAX_AGE
    # Upgrade halfway through the process's life: a deadline re-armed from scratch would fire MAX_AGE after this.
    wait_for(lambda: time.time() >= row["started"] + MAX_AGE / 2, timeout=30, message="half the process's life")
    done = upgrade(running)
    assert done.returncode == 0, done.stderr

    def replacement():
        rows = running.call("procs", name="aged")["processes"]
        return next((r for r in rows if r["pid"] != row["pid"]), None)
    new = wait_for(replacement, timeout=60, message="the max_age replacement")
    assert new["wid"] == row["wid"]
    assert deadline - 0.5 <= new["started"] < deadline + MAX_AGE / 2, (row, new)


def test_a_child_that_exits_during_the_exec_is_reaped_with_its_status(gcircusd, tmp_path):
    trigger = tmp_path / "exit-now"
    running = gcircusd(f"""
        [watcher:quitter]
        cmd = sh -c 'while [ ! -e {trigger} ]; do sleep 0.005; done; rm {trigger}; exit 7'
        graceful_timeout = 2
        """)
    (row,) = running.call("procs", name="quitter")["processes"]
    proc = gsubprocess.Popen([*GCIRCUSCTL, "--endpoint", running.endpoint, "upgrade"], stdout=gsubprocess.PIPE,
                             stderr=gsubprocess.PIPE, text=True, env=ctl_env())
    # The child exits (and takes the file away: its replacement stays) once the hand-over has begun.
    wait_for(lambda: "handing over to a new image" in running.daemon.output() or proc.poll() is not None,
             timeout=60, message="the hand-over beginning")
    trigger.touch()
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err

    def replaced():
        rows = running.call("procs", name="quitter")["processes"]
        return rows if len(rows) == 1 and rows[0]["pid"] != row["pid"] else None
    (new,) = wait_for(replaced, timeout=30, message="the child replaced")
    assert new["wid"] == row["wid"]
    assert new["last_exit"]["pid"] == row["pid"] and new["last_exit"]["code"] == 7, new


def test_a_watcher_waiting_for_its_dependency_still_waits_after_an_upgrade(gcircusd):
    running = gcircusd("""
        [watcher:db]
        cmd = sleep 1000
        autostart = false
        graceful_timeout = 2

        [watcher:app]
        cmd = sleep 1000
        depends_on = db
        graceful_timeout = 2
        """)
    before = running.call("procs", name="app")["watcher"]
    assert (before["state"], running.pids("app")) == ("starting", [])
    done = upgrade(running)
    assert done.returncode == 0, done.stderr
    after = running.call("procs", name="app")["watcher"]
    assert (after["state"], after["reason"]) == (before["state"], before["reason"])
    assert running.pids("app") == []
    running.call("start", name="db", waiting=True)
    wait_for(lambda: running.call("status", name="app")["status"] == "active" and len(running.pids("app")) == 1,
             timeout=30, message="app started once db is")
