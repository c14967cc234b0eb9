"""Non-waiting reloadconfig requests are bounded (issue 10): a flood of them costs one greenlet, not one each."""
from __future__ import annotations

import gc

import gevent

from gcircus.control.executors import EXECUTORS
from gcircus.daemon import Arbiter
from tests.support.daemons import write_config
from tests.support.ports import free_port
from tests.support.waiting import wait_for


def live_greenlets() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, gevent.Greenlet) and not obj.dead)


def test_a_flood_of_reloadconfig_casts_is_applied_by_one_greenlet(tmp_path):
    path = tmp_path / "app.ini"
    write_config(path, f"""
        [circus]
        endpoint = tcp://127.0.0.1:{free_port()}
        pubsub_endpoint = tcp://127.0.0.1:{free_port()}

        [watcher:w]
        cmd = sleep 1000
        """)
    arbiter = Arbiter.load_from_config(str(path))
    arbiter.start(background=True)
    try:
        execute = EXECUTORS["reloadconfig"]
        props = {"waiting": False, "dry_run": False}
        before = live_greenlets()
        for _ in range(500):
            assert "plan" in execute(arbiter, props)
        # Every request made while one is applied is served by one more application, in the same greenlet.
        assert live_greenlets() - before <= 1
        path.write_text(path.read_text().replace("[watcher:w]", "[watcher:added]\ncmd = sleep 1000\n\n[watcher:w]"))
        execute(arbiter, props)
        wait_for(lambda: "added" in arbiter.statuses() and arbiter.get_watcher("added").pids, 30,
                 message="the last request's file applied")
    finally:
        arbiter.stop()
