"""Issue 9, lifecycle: a crash loop ends after max_retry back-offs and stays stopped until an operator starts it.

Before the fix the respawn pacing (up to 10 s between quick exits) spread a crash loop's exits beyond the flapping
window, so after three back-offs the loop was no longer recognised: the watcher reported `active` and spawned a
failing command every 10 s forever, logged at debug level.
"""
from __future__ import annotations

import re

import gevent
import pytest

from gcircus.backoff import BACKOFF, OK, CrashLoopGuard
from gcircus.client import Client
from gcircus.watcher import Watcher
from tests.conftest import wait_for
from tests.test_gcircusd_signals import make_config

BACKOFF_LINE = re.compile(r"\[WARNING\] watcher 'crash' is flapping .* retrying in [\d.]+s \(retry (\S+)(?: of \d+)?\)")
GAVE_UP_LINE = re.compile(r"\[(?:WARNING|ERROR)\] watcher 'crash' is flapping and gave up after (\d+) retries")


def crash_config(tmp_path, watcher_options: str, extra_sections: str = "") -> str:
    """A crash-looping watcher `crash` tuned by `watcher_options`, and `clock`, a crash loop used to see time pass."""
    clock = "[watcher:clock]\ncmd = false\nflapping.retry_in = 0.2\nflapping.max_retry = -1\n"
    return make_config(tmp_path, f"[watcher:crash]\ncmd = false\n{watcher_options}\n\n{clock}\n{extra_sections}",
                       circus="loglevel = debug\n")


def endpoint_of(config: str) -> str:
    return re.search(r"^endpoint = (\S+)", open(config).read(), re.M).group(1)


def status(config: str, name: str) -> str:
    with Client(endpoint_of(config), timeout=5) as client:
        return client.call("status", name=name)["status"]


def spawns_of(daemon, name: str) -> int:
    return daemon.output().count(f"watcher {name!r} started")


def exits_of(daemon, name: str) -> int:
    return len(re.findall(rf"watcher {name!r}: process \d+ exited", daemon.output()))


def clock_backoffs(daemon) -> int:
    return daemon.output().count("watcher 'clock' is flapping")


@pytest.mark.parametrize("tuning", [
    ("flapping.retry_in = 0.2", ""),
    # A wider window (still shorter than the 10 s pacing that hid the loop) tolerates a heavily loaded machine.
    ("", "[plugin:flapping]\nuse = circus.plugins.flapping.Flapping\nretry_in = 0.2\nwindow = 3\n"),
], ids=["watcher-option", "plugin-section"])
def test_crash_loop_gives_up_after_max_retry_and_stays_stopped(tmp_path, daemon_factory, tuning):
    config = crash_config(tmp_path, *tuning)  # default attempts, window and max_retry (5)
    daemon = daemon_factory(config)
    gave_up = wait_for(lambda: GAVE_UP_LINE.search(daemon.output()), timeout=60, message="the crash loop gives up")
    assert gave_up.group(1) == "5"
    assert [m.group(1) for m in BACKOFF_LINE.finditer(daemon.output())] == ["1", "2", "3", "4", "5"]
    assert status(config, "crash") == "stopped"
    starts = spawns_of(daemon, "crash")
    assert starts == 6  # the first start and 5 retries
    # It stays stopped: while the clock watcher backs off three more times (0.2 s each), nothing restarts it.
    seen = clock_backoffs(daemon)
    wait_for(lambda: clock_backoffs(daemon) >= seen + 3, timeout=60, message="time passing on the clock watcher")
    assert spawns_of(daemon, "crash") == starts
    assert status(config, "crash") == "stopped"


def test_operator_start_after_give_up_runs_a_full_cycle_again(tmp_path, daemon_factory):
    config = crash_config(tmp_path, "flapping.retry_in = 0.2\nflapping.window = 3\nflapping.max_retry = 2")
    daemon = daemon_factory(config)
    wait_for(lambda: GAVE_UP_LINE.search(daemon.output()), timeout=60, message="the crash loop gives up")
    with Client(endpoint_of(config), timeout=5) as client:
        assert client.call("start", name="crash")["status"] == "ok"
    wait_for(lambda: len(GAVE_UP_LINE.findall(daemon.output())) == 2, timeout=60, message="a second give-up")
    assert [m.group(1) for m in BACKOFF_LINE.finditer(daemon.output())] == ["1", "2", "1", "2"]
    assert spawns_of(daemon, "crash") == 6


def test_retry_forever_keeps_backing_off_without_spinning(tmp_path, daemon_factory):
    config = crash_config(tmp_path, "flapping.retry_in = 0.2\nflapping.window = 3\nflapping.max_retry = -1")
    daemon = daemon_factory(config)
    # Beyond the point where the growing respawn delay used to hide the loop (the fourth back-off).
    wait_for(lambda: len(BACKOFF_LINE.findall(daemon.output())) >= 8, timeout=60, message="8 back-offs")
    assert set(BACKOFF_LINE.findall(daemon.output())) == {"unlimited"}
    # Each episode is exactly `attempts` (2) quick exits, then a pause of retry_in: never a spin.
    output = daemon.output()
    episodes = output.count("watcher 'crash' started")
    assert len(re.findall(r"watcher 'crash': process \d+ exited", output)) <= 2 * episodes
    assert not GAVE_UP_LINE.search(output)


def test_without_flapping_check_the_watcher_stays_active_and_respawns(tmp_path, daemon_factory):
    config = crash_config(tmp_path, "check_flapping = false")
    daemon = daemon_factory(config)
    wait_for(lambda: exits_of(daemon, "crash") >= 6, timeout=60, message="6 paced respawns")
    assert status(config, "crash") == "active"
    assert "watcher 'crash' is flapping" not in daemon.output()


def test_respawn_pauses_are_left_out_of_the_flapping_window():
    guard = CrashLoopGuard(attempts=2, window=1.0, retry_in=7, max_retry=5)
    assert guard.record_exit(100.0) == OK
    guard.record_pause(10.0)  # the watcher waited 10 s before respawning: the exits are 10.2 s apart
    assert guard.record_exit(110.2) == BACKOFF


def test_start_with_an_unspawnable_command_retrying_forever_returns_and_retries_in_the_background(tmp_path):
    tool = tmp_path / "tool"
    watcher = Watcher("missing", str(tool), max_retry=-1)
    try:
        # Before, start() retried inside the watcher lock forever: `start` never replied, later watchers never started.
        assert gevent.with_timeout(30, watcher.start) == {"started": [], "kept": []}
        assert watcher.status() == "active" and str(tool) in watcher.spawn_error
        draft = tmp_path / "tool.draft"
        draft.write_text("#!/bin/sh\nexec sleep 1000\n")
        draft.chmod(0o755)
        draft.rename(tool)
        wait_for(lambda: len(watcher.pids) == 1, timeout=30, message="the command spawned once it exists")
        assert watcher.spawn_error is None
    finally:
        watcher.stop()
