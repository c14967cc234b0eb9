"""Arbiter: priority order, embedding API (start/run/stop), no signal handlers, loading from a Circus ini."""
from __future__ import annotations

import signal

import gevent
import pytest

from gcircus import get_arbiter
from gcircus.daemon import Arbiter
from gcircus.events import topic
from tests.support import hookfuncs
from tests.support.daemons import write_config
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for


@pytest.fixture(autouse=True)
def clear_calls():
    hookfuncs.CALLS.clear()
    yield
    hookfuncs.CALLS.clear()


def _recording(name: str, priority: int) -> dict:
    hooks = {"before_start": ("tests.support.hookfuncs.record", False),
             "before_stop": ("tests.support.hookfuncs.record", False)}
    return {"name": name, "cmd": "/bin/sleep 1000", "priority": priority, "hooks": hooks, "graceful_timeout": 5}


def test_get_arbiter_starts_by_descending_priority_and_stops_in_reverse():
    order: list[tuple[str, str]] = []

    def record(watcher, arbiter, hook_name, **kwargs):
        order.append((hook_name, watcher.name))
        return True

    specs = []
    for name, prio in (("low", 0), ("high", 10), ("mid", 5)):
        spec = _recording(name, prio)
        spec["hooks"] = {"before_start": (record, False), "before_stop": (record, False)}
        specs.append(spec)
    arbiter = get_arbiter(specs)
    arbiter.start(background=True)
    try:
        assert [n for h, n in order if h == "before_start"] == ["high", "mid", "low"]
        assert arbiter.statuses() == {"low": "active", "high": "active", "mid": "active"}
        assert arbiter.numprocesses() == 3 and arbiter.numwatchers() == 3
    finally:
        arbiter.stop()
    assert [n for h, n in order if h == "before_stop"] == ["low", "mid", "high"]


def test_watcher_name_defaults_to_command_basename_and_lookup_is_case_insensitive():
    arbiter = get_arbiter([{"cmd": "/bin/sleep 1000"}])
    assert arbiter.get_watcher("SLEEP").name == "sleep"
    with pytest.raises(KeyError):
        arbiter.get_watcher("nope")


def test_a_background_arbiter_installs_no_signal_handlers():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)}
    arbiter = get_arbiter([{"cmd": "/bin/sleep 1000"}], background=True)
    arbiter.start()
    try:
        after = {s: signal.getsignal(s) for s in before}
        assert after == before
    finally:
        arbiter.stop()


def test_start_blocks_until_stopped_and_then_puts_the_signal_handlers_back():
    """Circus's start() blocks unless background=True; meanwhile SIGTERM and SIGINT stop the arbiter."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    arbiter = get_arbiter([{"cmd": "/bin/sleep 1000", "numprocesses": 2, "graceful_timeout": 5}])
    seen = {}

    def stop_when_up():
        wait_for(lambda: arbiter.numprocesses() == 2, message="children up")
        seen["handlers"] = {s: signal.getsignal(s) for s in before}
        seen["pids"] = [p for w in arbiter.watchers for p in w.pids]
        arbiter.stop()

    stopper = gevent.spawn(stop_when_up)
    try:
        arbiter.start()  # returns only once stop_when_up has stopped it
    finally:
        stopper.kill()
        arbiter.stop()
    assert stopper.successful(), stopper.exception
    assert all(seen["handlers"][s] != before[s] for s in before)  # caught while it ran
    assert {s: signal.getsignal(s) for s in before} == before
    assert not any(alive(p) for p in seen["pids"])


def test_run_blocks_until_stop_and_stop_blocks_until_children_are_gone():
    arbiter = get_arbiter([{"cmd": "/bin/sleep 1000", "numprocesses": 3, "graceful_timeout": 5}])
    runner = gevent.spawn(arbiter.run)
    wait_for(lambda: arbiter.numprocesses() == 3, message="children up")
    pids = [p for w in arbiter.watchers for p in w.pids]
    assert not runner.ready()
    arbiter.stop()
    assert not any(alive(p) for p in pids)
    runner.join(timeout=5)
    assert runner.ready() and runner.successful()


def test_autostart_false_is_not_started():
    arbiter = get_arbiter([{"name": "manual", "cmd": "/bin/sleep 1000", "autostart": False},
                           {"name": "auto", "cmd": "/bin/sleep 1000"}])
    arbiter.start(background=True)
    try:
        assert arbiter.statuses() == {"manual": "stopped", "auto": "active"}
    finally:
        arbiter.stop()


def test_add_and_rm_watcher_publish_events():
    arbiter = get_arbiter([])
    topics: list[str] = []
    arbiter.subscribe(lambda event: topics.append(topic(event)))
    arbiter.start(background=True)
    try:
        watcher = arbiter.add_watcher("Extra Worker", "/bin/sleep 1000", start=True)
        assert watcher.status() == "active"
        with pytest.raises(ValueError):
            arbiter.add_watcher("extra worker", "/bin/true")
        pid = watcher.pids[0]
        arbiter.rm_watcher("EXTRA WORKER")
        assert not alive(pid) and arbiter.numwatchers() == 0
    finally:
        arbiter.stop()
    assert topics[0] == "watcher.extra_worker.add"
    assert "watcher.extra_worker.spawn" in topics and "watcher.extra_worker.remove" in topics


def test_load_from_config_builds_watchers_from_circus_ini(tmp_path):
    # Free ports: the defaults (5555, 5556) may be in use by a parallel test or anything else on the machine.
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    path = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = {endpoint}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}

        [watcher:web]
        cmd = /bin/sleep 1000
        numprocesses = 2
        priority = 3

        [watcher:worker]
        cmd = /bin/sleep 1000
    """)
    arbiter = Arbiter.load_from_config(path)
    assert arbiter.endpoint == endpoint
    arbiter.start(background=True)
    try:
        assert [w.name for w in arbiter.iter_watchers()] == ["web", "worker"]
        assert arbiter.numprocesses() == 3
    finally:
        arbiter.stop()


def test_stop_with_graceful_false_does_not_wait_for_grace():
    cmd = "sh -c 'trap \"\" TERM; while :; do sleep 0.05; done'"
    arbiter = get_arbiter([{"name": "stubborn", "cmd": cmd, "graceful_timeout": 60}])
    arbiter.start(background=True)
    pid = arbiter.get_watcher("stubborn").pids[0]
    with gevent.Timeout(10):
        arbiter.stop(graceful=False)
    assert not alive(pid)


def test_unknown_user_is_a_config_error_naming_the_watcher(tmp_path):
    from gcircus.errors import ConfigError

    path = write_config(tmp_path / "circus.ini", """
        [watcher:web]
        cmd = /bin/sleep 1000
        uid = no-such-user-here
    """)
    with pytest.raises(ConfigError, match=r"\[watcher:web\].*no-such-user-here"):
        Arbiter.load_from_config(path)


def test_watcher_added_at_run_time_takes_the_config_files_defaults(tmp_path):
    path = write_config(tmp_path / "circus.ini", """
        [circus]
        pdeathsig = false

        [watcher:web]
        cmd = /bin/sleep 1000

        [plugin:flapping]
        use = circus.plugins.flapping.Flapping
        retry_in = 3
        attempts = 4
    """)
    arbiter = Arbiter.load_from_config(path)
    added = arbiter.add_watcher("extra", "/bin/sleep 1000")
    assert added.pdeathsig is False
    assert added.respawn_policy.retry_in == 3 and added.respawn_policy.attempts == 4
    explicit = arbiter.add_watcher("other", "/bin/sleep 1000", pdeathsig=True)
    assert explicit.pdeathsig is True
