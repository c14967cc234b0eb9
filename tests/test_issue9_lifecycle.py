"""Issue 9, lifecycle: a crash loop ends after max_retry back-offs and stays failed until an operator starts it.

Before the fix the respawn pacing (up to 10 s between quick exits) spread a crash loop's exits beyond the flapping
window, so after three back-offs the loop was no longer recognised: the watcher reported `active` and spawned a
failing command every 10 s forever, logged at debug level.
"""
from __future__ import annotations

import os
import re
import signal

import gevent
import pytest

from gcircus.client import Client
from gcircus.respawn import BACK_OFF, RETRY, RespawnPolicy
from gcircus.watcher import Watcher
from tests.support.daemons import make_config
from tests.support.processes import alive
from tests.support.waiting import wait_for

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
    # A wider window (still shorter than the 10 s pacing that hid the loop) tolerates a heavily loaded machine, where
    # one fork, exec and exit can take over the default 1 s (the exact sequence of back-offs is asserted).
    ("flapping.retry_in = 0.2\nflapping.window = 3", ""),
    ("", "[plugin:flapping]\nuse = circus.plugins.flapping.Flapping\nretry_in = 0.2\nwindow = 3\n"),
], ids=["watcher-option", "plugin-section"])
def test_crash_loop_gives_up_after_max_retry_and_stays_failed(tmp_path, daemon_factory, tuning):
    config = crash_config(tmp_path, *tuning)  # default attempts and max_retry (5)
    daemon = daemon_factory(config)
    gave_up = wait_for(lambda: GAVE_UP_LINE.search(daemon.output()), timeout=60, message="the crash loop gives up")
    assert gave_up.group(1) == "5"
    assert [m.group(1) for m in BACKOFF_LINE.finditer(daemon.output())] == ["1", "2", "3", "4", "5"]
    assert status(config, "crash") == "failed"
    starts = spawns_of(daemon, "crash")
    assert starts == 6  # the first start and 5 retries
    # It stays stopped: while the clock watcher backs off three more times (0.2 s each), nothing restarts it.
    seen = clock_backoffs(daemon)
    wait_for(lambda: clock_backoffs(daemon) >= seen + 3, timeout=60, message="time passing on the clock watcher")
    assert spawns_of(daemon, "crash") == starts
    assert status(config, "crash") == "failed"


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


def crash(policy: RespawnPolicy, at: float) -> str:
    """What the policy decides for a process that exited at once, at monotonic time `at`."""
    return policy.process_exited(0.0, now=at).action


def test_respawn_pauses_are_left_out_of_the_flapping_window():
    guard = RespawnPolicy(attempts=2, window=1.0, retry_in=7, max_retry=5)
    assert crash(guard, 100.0) == RETRY
    guard.record_pause(100.1, 110.1)  # the watcher waited 10 s before respawning: the exits are 10.2 s apart
    assert crash(guard, 110.2) == BACK_OFF


def test_only_the_part_of_a_pause_between_two_exits_is_left_out():
    # The pause (another process's respawn) began 9.5 s before the first exit: only its last 0.5 s lie between the
    # exits, 2.5 s apart. Before, the whole pause was subtracted (-7.5 s, so "flapping").
    guard = RespawnPolicy(attempts=2, window=1.0, retry_in=7, max_retry=5)
    assert crash(guard, 109.5) == RETRY
    guard.record_pause(100.0, 110.0)
    assert crash(guard, 112.0) == RETRY
    # An exit during a pause counts the pause only once it is over (it is recorded when the wait returns).
    assert crash(guard, 200.0) == RETRY
    assert crash(guard, 203.0) == RETRY  # 3 s apart; the pause in progress from 199 to 209 is not known yet
    guard.record_pause(199.0, 209.0)


def test_start_with_an_unspawnable_command_retrying_forever_returns_and_retries_in_the_background(tmp_path):
    tool = tmp_path / "tool"
    watcher = Watcher("missing", str(tool), max_retry=-1)
    try:
        # Before, start() retried inside the watcher lock forever: `start` never replied, later watchers never started.
        assert gevent.with_timeout(30, watcher.start) == {"started": [], "kept": []}
        assert watcher.status() == "backoff" and str(tool) in watcher.spawn_error
        assert str(tool) in watcher.reason and watcher.respawn_policy.endless
        draft = tmp_path / "tool.draft"
        draft.write_text("#!/bin/sh\nexec sleep 1000\n")
        draft.chmod(0o755)
        draft.rename(tool)
        wait_for(lambda: len(watcher.pids) == 1, timeout=30, message="the command spawned once it exists")
        assert watcher.spawn_error is None
    finally:
        watcher.stop()


def install_script(path, body: str) -> None:
    """Put an executable shell script at `path` in one step (a half-written script must never be exec'd)."""
    draft = path.with_name(path.name + ".draft")
    draft.write_text(f"#!/bin/sh\n{body}\n")
    draft.chmod(0o755)
    draft.rename(path)


def sleeping(pid: int) -> bool:
    """True once `pid` runs `sleep` (exec'd by its script, itself exec'd by setpriv after the spawn returned)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0] == b"sleep"
    except OSError:
        return False


class Events:
    """The (event, pid) pairs a watcher publishes, in order."""

    def __init__(self, watcher: Watcher):
        self.seen: list[tuple[str, int | None]] = []
        watcher.subscribe(lambda event: self.seen.append((event.name, event.fields.get("process_pid"))))

    def index(self, event: str, pid: int) -> int:
        return self.seen.index((event, pid))


def test_reload_while_the_command_is_missing_keeps_the_old_processes(tmp_path):
    # Before, with max_retry = -1 the old processes were stopped with nothing to replace them: capacity 0.
    tool = tmp_path / "tool"
    install_script(tool, "exec sleep 1000")
    watcher = Watcher("tool", str(tool), numprocesses=2, max_retry=-1, graceful_timeout=5)
    try:
        old = sorted(watcher.start()["started"])
        wait_for(lambda: all(sleeping(pid) for pid in old), message="the script run")
        tool.unlink()
        result = gevent.with_timeout(60, watcher.reload)
        assert result == {"stopped": [], "started": [], "kept": old}
        assert str(tool) in watcher.spawn_error
        assert sorted(watcher.pids) == old and all(alive(pid) for pid in old)
        assert watcher.status() == "active"
        install_script(tool, "exec sleep 1000")
        result = gevent.with_timeout(60, watcher.reload)
        assert sorted(result["stopped"]) == old and len(result["started"]) == 2 and result["kept"] == []
        assert sorted(watcher.pids) == sorted(result["started"]) and not any(alive(pid) for pid in old)
    finally:
        watcher.stop()


def test_max_age_while_the_command_is_missing_keeps_the_old_process_until_it_can_be_replaced(tmp_path):
    tool = tmp_path / "tool"
    install_script(tool, "exec sleep 1000")
    watcher = Watcher("tool", str(tool), max_retry=-1, max_age=1, max_age_variance=0, graceful_timeout=5)
    events = Events(watcher)
    try:
        [old] = watcher.start()["started"]
        wait_for(lambda: sleeping(old), message="the script run")
        tool.unlink()
        wait_for(lambda: watcher.spawn_error, timeout=60, message="the replacement failing to spawn")
        install_script(tool, "exec sleep 1000")
        new = wait_for(lambda: next((pid for event, pid in events.seen if event == "spawn" and pid != old), None),
                       timeout=60, message="a replacement, once the command is back")
        wait_for(lambda: ("reap", old) in events.seen, timeout=60, message="the old process stopped")
        # The old process ran until its replacement had started; before, it was stopped with none (reaped first).
        assert events.index("spawn", new) < events.index("reap", old)
        assert watcher.status() == "active"
    finally:
        watcher.stop()


def test_restart_during_a_respawn_pause_respawns_at_full_pace_again(tmp_path):
    tool, healthy = tmp_path / "tool", tmp_path / "healthy"
    install_script(tool, f"[ -e {healthy} ] && exec sleep 1000\nexit 1")
    watcher = Watcher("tool", str(tool), check_flapping=False, graceful_timeout=5)
    events = Events(watcher)
    try:
        watcher.start()
        # The 7th quick exit in a row is replaced after 3.2 s: restart in that pause.
        wait_for(lambda: [event for event, _ in events.seen].count("reap") >= 7, timeout=60, message="7 exits")
        healthy.touch()
        [pid] = watcher.restart()["started"]
        # The paced respawn of the old run was dropped with it: before, it stayed pending (and every respawn of
        # the new run waited for it), so the new run's first respawn waited out the old pause.
        assert watcher._fill_greenlet is None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: watcher.pids and watcher.pids != [pid], timeout=60, message="the immediate respawn")
    finally:
        watcher.stop()


def test_a_back_off_decided_before_a_restart_leaves_the_restarted_watcher_alone():
    watcher = Watcher("loop", "sleep 1000", numprocesses=2, graceful_timeout=5,
                      flapping={"attempts": 2, "window": 60, "retry_in": 60})
    try:
        pids = watcher.start()["started"]
        with watcher._lock:  # the watcher is busy (as with a long command): the restart queues for its turn
            restarted = watcher.submit_restart()
            for pid in pids:  # meanwhile its processes crash: a back-off verdict, waiting for the lock too
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: watcher.respawn_policy.tries == 1, timeout=60, message="the back-off verdict")
        result = restarted.get(timeout=60)
        with watcher._lock:  # the back-off queued behind the restart has had its turn
            pass
        # Before, it stopped the watcher just restarted by hand (and set it to retry, or to give up).
        assert watcher.status() == "active" and watcher.respawn_policy.tries == 0
        assert sorted(watcher.pids) == sorted(result["started"]) and all(alive(pid) for pid in watcher.pids)
    finally:
        watcher.stop()


def test_pacing_still_works_after_hours_of_failures(tmp_path):
    # The delays were 0.05 * 2 ** failures: past ~1000 failures in a row (under 3 hours at 10 s each) that is an
    # OverflowError, raised out of the reload below (the respawn pacing of quick exits had the same flaw).
    watcher = Watcher("missing", str(tmp_path / "tool"), max_retry=-1)
    try:
        watcher.start()
        watcher.respawn_policy.spawn_failures = 5000  # as after hours of a missing command
        assert gevent.with_timeout(60, watcher.reload) == {"stopped": [], "started": [], "kept": []}
        assert watcher.respawn_policy.spawn_failures == 5001
    finally:
        watcher.stop()
