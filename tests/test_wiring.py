"""The daemon's wiring: services attached to the arbiter, coalesced background runs, and the import layers."""
import subprocess
import sys

import gevent
import gevent.event
import pytest

from gcircus.arbiter import Arbiter
from gcircus.service import CoalescedRuns


class Recorder:
    def __init__(self, name, log, fail=False):
        self.name, self.log, self.fail = name, log, fail

    def start(self):
        if self.fail:
            raise OSError(f"{self.name} cannot start")
        self.log.append(("start", self.name))

    def stop(self):
        self.log.append(("stop", self.name))


def test_services_start_in_order_and_stop_in_reverse_the_early_ones_before_the_watchers():
    log = []
    arbiter = Arbiter([], background=True)
    arbiter.attach(Recorder("publisher", log))
    arbiter.attach(Recorder("control", log))
    arbiter.attach(Recorder("plugins", log), stop_before_watchers=True)
    arbiter.start()
    assert log == [("start", "publisher"), ("start", "control"), ("start", "plugins")]
    arbiter.stop()
    arbiter.wait_channels_closed(5)
    assert log[3:] == [("stop", "plugins"), ("stop", "control"), ("stop", "publisher")]


def test_a_service_that_cannot_start_stops_those_started_before_it_and_fails_the_start():
    log = []
    arbiter = Arbiter([], background=True)
    arbiter.attach(Recorder("publisher", log))
    arbiter.attach(Recorder("control", log, fail=True))
    with pytest.raises(OSError, match="control cannot start"):
        arbiter.start()
    assert log == [("start", "publisher"), ("stop", "publisher")]
    assert not arbiter.running


def test_coalesced_runs_serve_a_flood_of_requests_with_two_runs_in_one_greenlet():
    release = gevent.event.Event()
    runs = []

    def job():
        runs.append(gevent.getcurrent())
        release.wait()

    coalesced = CoalescedRuns(job, "job")
    for _ in range(100):
        coalesced.request()
        gevent.sleep(0)
    release.set()
    coalesced.greenlet.join(5)
    assert len(runs) == 2 and runs[0] is runs[1]


def test_stopping_coalesced_runs_drops_the_pending_request_and_kills_the_run():
    coalesced = CoalescedRuns(lambda: gevent.sleep(60), "job")
    coalesced.request()
    gevent.sleep(0)
    coalesced.request()
    greenlet = coalesced.greenlet
    coalesced.stop()
    assert greenlet.dead and not coalesced.requested


def test_the_core_arbiter_and_the_package_root_import_no_layer_above_them():
    code = ("import sys, gcircus, gcircus.arbiter; "
            "print(sorted(m for m in sys.modules if m.startswith(('gcircus.control', 'gcircus.plugins', "
            "'gcircus.stats', 'gcircus.daemon', 'gcircus.cli', 'zmq'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
