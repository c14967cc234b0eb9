"""reloadconfig and SIGHUP against real gcircusd daemons, with the config file rewritten between calls."""
from __future__ import annotations

import json
import signal
import subprocess
import textwrap

import gevent
import pytest
import zmq.green as zmq

from tests.support.gcircusctl import GCIRCUSCTL
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for

BASE = """
    [watcher:web]
    cmd = /bin/sleep 1001
    numprocesses = 2
    graceful_timeout = 2

    [watcher:worker]
    cmd = /bin/sleep 1002
    graceful_timeout = 2
    """
BASE = textwrap.dedent(BASE)


def test_unchanged_config_keeps_every_process(setup):
    setup.start(BASE, {"web": 2, "worker": 1})
    before = {w: setup.pids(w) for w in ("web", "worker")}
    reply = setup.call("reloadconfig", waiting=True)
    assert reply["status"] == "ok", reply
    assert sorted(reply["plan"]["watchers"]["unchanged"]) == ["web", "worker"]
    assert {w: setup.pids(w) for w in ("web", "worker")} == before


def test_numprocesses_change_scales_without_touching_running_processes(setup):
    setup.start(BASE, {"web": 2, "worker": 1})
    web, worker = setup.pids("web"), setup.pids("worker")
    setup.write(BASE.replace("numprocesses = 2", "numprocesses = 4"))
    reply = setup.call("reloadconfig", waiting=True)
    assert reply["plan"]["watchers"]["scaled"] == {"web": {"numprocesses": [2, 4]}}
    now = setup.wait_pids("web", 4)
    assert set(web) <= set(now)
    assert setup.pids("worker") == worker
    setup.write(BASE.replace("numprocesses = 2", "numprocesses = 1"))
    setup.call("reloadconfig", waiting=True)
    assert len(setup.wait_pids("web", 1)) == 1
    assert setup.pids("web")[0] in now


def test_runtime_incr_is_not_a_config_change(setup):
    setup.start(BASE, {"web": 2, "worker": 1})
    setup.call("incr", name="web", nb=1, waiting=True)
    pids = setup.wait_pids("web", 3)
    reply = setup.call("reloadconfig", waiting=True)
    assert "web" in reply["plan"]["watchers"]["unchanged"]
    assert setup.pids("web") == pids


def _subscribe(pubsub: str, events: list):
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"watcher.web.")
    sub.connect(pubsub)

    def loop():
        while True:
            topic, body = sub.recv_multipart()
            events.append((topic.decode().rsplit(".", 1)[1], json.loads(body).get("process_pid")))
    return sub, gevent.spawn(loop)


def test_cmd_change_reloads_gracefully_new_processes_first(setup):
    setup.start(BASE, {"web": 2, "worker": 1})
    old, worker = setup.pids("web"), setup.pids("worker")
    events: list = []
    sub, reader = _subscribe(setup.pubsub, events)
    try:
        # The subscription is live once a harmless change of the web watcher is seen on it.
        wait_for(lambda: setup.call("set", name="web", options={"warmup_delay": 0})
                 and any(e[0] == "updated" for e in events), 5, interval=0.05,
                 message="subscription live")
        events.clear()
        setup.write(BASE.replace("/bin/sleep 1001", "/bin/sleep 1011"))
        reply = setup.call("reloadconfig", waiting=True)
        assert reply["plan"]["watchers"]["reloaded"] == {"web": ["cmd"]}
        new = setup.wait_pids("web", 2)
        assert not set(new) & set(old)
        wait_for(lambda: not any(alive(p) for p in old), message="old processes gone")
        wait_for(lambda: sum(1 for e, _ in events if e == "spawn") >= 2, message="spawn events")
    finally:
        reader.kill()
        sub.close()
    names = [e for e, _ in events]
    first_kill = min(i for i, e in enumerate(names) if e in ("kill", "reap"))
    assert names[:first_kill].count("spawn") == 2, events  # both new processes spawned before any old one is killed
    assert setup.call("get", name="web", keys=["cmd"])["options"]["cmd"] == "/bin/sleep 1011"
    assert setup.pids("worker") == worker


def test_non_live_change_replaces_the_watcher(setup):
    setup.start(BASE, {"web": 2, "worker": 1})
    web, worker = setup.pids("web"), setup.pids("worker")
    setup.write(BASE.replace("[watcher:worker]", "[watcher:worker]\npriority = 3"))
    reply = setup.call("reloadconfig", waiting=True)
    assert "plan" in reply, reply
    assert reply["plan"]["watchers"]["replaced"] == {"worker": ["priority"]}
    new = setup.wait_pids("worker", 1)
    assert new != worker
    assert setup.pids("web") == web


def test_added_and_removed_watchers(setup):
    setup.start(BASE, {"web": 2, "worker": 1})
    web, worker = setup.pids("web"), setup.pids("worker")
    setup.write(BASE.replace("[watcher:worker]", "[watcher:extra]\ncmd = /bin/sleep 1003\n\n[watcher:lazy]\n"
                             "cmd = /bin/sleep 1004\nautostart = false\n\n[watcher:gone]"))
    # "worker" is renamed "gone": worker removed, gone/extra/lazy added
    reply = setup.call("reloadconfig", waiting=True)
    plan = reply["plan"]["watchers"]
    assert plan["added"] == ["extra", "gone", "lazy"]
    assert plan["removed"] == ["worker"]
    assert plan["unchanged"] == ["web"]
    assert setup.watchers() == ["extra", "gone", "lazy", "web"]
    setup.wait_pids("extra", 1)
    setup.wait_pids("gone", 1)
    assert setup.call("status", name="lazy")["status"] == "stopped"
    wait_for(lambda: not alive(worker[0]), message="removed watcher's process stopped")
    assert setup.pids("web") == web


BROKEN = [
    ("syntax", BASE.replace("numprocesses = 2", "numprocesses = 2\nthis is not an option"), "watcher:web"),
    ("bad value", BASE.replace("numprocesses = 2", "numprocesses = lots"), "numprocesses"),
    ("bad plugin", BASE + "\n[plugin:nope]\nuse = no.such.module.Plugin\n", "plugin:nope"),
    ("unknown signal", BASE.replace("graceful_timeout = 2", "graceful_timeout = 2\nstop_signal = FOO", 1),
     "stop_signal"),
]


@pytest.mark.parametrize("label,text,needle", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_is_an_error_and_changes_nothing(setup, label, text, needle):
    setup.start(BASE, {"web": 2, "worker": 1})
    before = {w: setup.pids(w) for w in ("web", "worker")}
    setup.path.write_text(setup.path.read_text().split("[watcher:web]")[0] + textwrap.dedent(text)
                          .replace("numprocesses = 2", "numprocesses = 3"))
    for waiting in (True, False):
        reply = setup.call("reloadconfig", waiting=waiting)
        assert reply["status"] == "error", reply
        assert reply["errno"] == 3
        assert str(setup.path) in reply["reason"]
        if needle:
            assert needle in reply["reason"]
    # The file is checked before the reply, so a refused or dry run has nothing left running in the background.
    assert setup.watchers() == ["web", "worker"]
    assert {w: setup.pids(w) for w in ("web", "worker")} == before


def test_dry_run_shows_the_plan_and_changes_nothing(setup):
    setup.start(BASE, {"web": 2, "worker": 1})
    before = {w: setup.pids(w) for w in ("web", "worker")}
    setup.write(BASE.replace("numprocesses = 2", "numprocesses = 3").replace("[watcher:worker]",
                "[watcher:extra]\ncmd = /bin/sleep 1003\n\n[watcher:worker]"), circus="check_delay = 3\n")
    reply = setup.call("reloadconfig", dry_run=True)
    assert reply["plan"]["watchers"]["scaled"] == {"web": {"numprocesses": [2, 3]}}
    assert reply["plan"]["watchers"]["added"] == ["extra"]
    assert reply["plan"]["circus"]["changed"] == {"check_delay": [5.0, 3.0]}
    done = subprocess.run(GCIRCUSCTL + ["--endpoint", setup.endpoint, "reloadconfig", "--dry-run"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "watcher extra: added" in done.stdout
    assert "watcher web: numprocesses 2 -> 3" in done.stdout
    assert "[circus] check_delay: 5.0 -> 3.0 (applied)" in done.stdout
    # The file is checked before the reply, so a refused or dry run has nothing left running in the background.
    assert setup.watchers() == ["web", "worker"]
    assert {w: setup.pids(w) for w in ("web", "worker")} == before
    # now for real, through gcircusctl
    done = subprocess.run(GCIRCUSCTL + ["--endpoint", setup.endpoint, "reloadconfig", "--waiting"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert setup.watchers() == ["extra", "web", "worker"]
    setup.wait_pids("web", 3)
    assert setup.call("globaloptions", option="check_delay")["options"]["check_delay"] == 3.0


def test_gcircusctl_reports_a_broken_config(setup):
    setup.start(BASE, {"web": 2, "worker": 1})
    setup.write(BASE.replace("numprocesses = 2", "numprocesses = -4"))
    done = subprocess.run(GCIRCUSCTL + ["--endpoint", setup.endpoint, "reloadconfig"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 3
    assert "numprocesses" in done.stderr and str(setup.path) in done.stderr


def test_circus_key_that_needs_a_restart_is_reported(setup):
    setup.start(BASE, {"web": 2, "worker": 1})
    setup.write(BASE, circus=f"stats_endpoint = tcp://127.0.0.1:{free_port()}\n")
    plan = setup.call("reloadconfig", waiting=True)["plan"]
    assert plan["circus"]["needs_restart"] == ["stats_endpoint", "statsd"]  # the line turns stats on, as in Circus
    again = setup.call("reloadconfig", dry_run=True)["plan"]  # still differs from the running daemon
    assert again["circus"]["needs_restart"] == ["stats_endpoint", "statsd"]


def test_sighup_applies_the_file_and_survives_a_broken_one(setup):
    setup.start(BASE, {"web": 2, "worker": 1})
    web, worker = setup.pids("web"), setup.pids("worker")
    setup.write(BASE.replace("numprocesses = 2", "numprocesses = 3"))
    setup.daemon.signal(signal.SIGHUP)
    now = setup.wait_pids("web", 3)
    assert set(web) <= set(now)
    assert setup.pids("worker") == worker
    setup.write(BASE + "this is not an option\n")
    setup.daemon.signal(signal.SIGHUP)
    wait_for(lambda: "the configuration was not reloaded" in setup.daemon.output(), message="error logged")
    assert setup.pids("web") == now and setup.pids("worker") == worker
    assert setup.daemon.proc.poll() is None
