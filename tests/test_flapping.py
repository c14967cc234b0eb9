"""The built-in crash-loop back-off: Circus's flapping rule, applied inside the watcher."""
from __future__ import annotations

import os
import time

from gcircus.respawn import BACK_OFF, GIVE_UP, RETRY, RespawnPolicy
from gcircus.watcher import Watcher
from tests.support.recorders import WatcherRecorder
from tests.support.waiting import wait_for

FAST = {"attempts": 2, "window": 1.0, "retry_in": 0.3, "max_retry": 2}


def crash(policy: RespawnPolicy, at: float) -> str:
    """What the policy decides for a process that exited at once, at monotonic time `at`."""
    return policy.process_exited(0.0, now=at).action


def test_policy_follows_circus_rule():
    policy = RespawnPolicy(attempts=2, window=1.0, retry_in=7, max_retry=1)
    assert crash(policy, 0.0) == RETRY
    assert policy.process_exited(0.0, now=0.5).delay == 7  # 2 exits within 1 s: back off for retry_in
    assert crash(policy, 10.0) == RETRY
    assert crash(policy, 10.2) == GIVE_UP  # second flapping episode in a row, max_retry = 1
    assert crash(policy, 20.0) == RETRY
    assert crash(policy, 25.0) == RETRY  # too far apart: not flapping, counters reset
    assert policy.tries == 0


def test_unlimited_retries():
    policy = RespawnPolicy(attempts=2, window=1.0, retry_in=1, max_retry=-1)
    for i in range(20):
        crash(policy, i * 10.0)
        assert crash(policy, i * 10.0 + 0.1) == BACK_OFF


def test_crash_loop_backs_off_retries_then_gives_up_in_a_clear_state():
    watcher = Watcher("crashy", "sh -c 'exit 1'", flapping=FAST)
    rec = WatcherRecorder(watcher)
    cpu = os.times()
    began = time.monotonic()
    watcher.start()
    watcher.wait_for_state({"failed"}, timeout=15)
    elapsed = time.monotonic() - began
    used = (os.times().user - cpu.user) + (os.times().system - cpu.system)
    assert watcher.status() == "failed" and "crash loop" in watcher.reason
    # 2 exits per episode, first episode + max_retry retries, then it stays stopped.
    assert len(rec.of("spawn")) == 2 * (1 + FAST["max_retry"])
    assert elapsed >= FAST["retry_in"] * FAST["max_retry"]
    assert used < elapsed  # never spinning
    assert rec.names().count("stop") == 1 + FAST["max_retry"]


def test_check_flapping_false_keeps_respawning():
    watcher = Watcher("crashy", "sh -c 'exit 1'", check_flapping=False)
    rec = WatcherRecorder(watcher)
    try:
        watcher.start()
        wait_for(lambda: len(rec.of("spawn")) >= 6, message="respawns")
        assert watcher.status() == "active" and watcher.respawn_policy.tries == 0
    finally:
        watcher.stop()


def test_manual_start_resets_back_off_and_stop_cancels_retry():
    watcher = Watcher("crashy", "sh -c 'exit 1'", flapping={**FAST, "retry_in": 0.5})
    watcher.start()
    watcher.wait_for_state({"backoff"}, timeout=15)
    assert watcher.respawn_policy.retry_at is not None  # the retry time is known
    timer = watcher._retry_timer
    assert timer is not None and not timer.dead
    watcher.stop()
    # The pending retry was cancelled, so nothing restarts the watcher behind the operator's back.
    wait_for(lambda: timer.dead, message="retry timer cancelled")
    assert watcher._retry_timer is None and watcher.status() == "stopped"
    watcher.start()
    assert watcher.respawn_policy.tries == 0
    watcher.wait_for_state({"backoff"}, timeout=15)
    watcher.stop()


def test_without_flapping_check_a_crash_loop_is_paced_not_spun():
    watcher = Watcher("crashy", "sh -c 'exit 1'", check_flapping=False)
    rec = WatcherRecorder(watcher)
    cpu = os.times()
    began = time.monotonic()
    try:
        watcher.start()
        wait_for(lambda: len(rec.of("spawn")) >= 7, timeout=15, message="paced respawns")
    finally:
        watcher.stop()
    elapsed = time.monotonic() - began
    # Delays 0, 0.1, 0.2, 0.4, 0.8, 1.6 between the 7 spawns: at least 3.1 s, not a busy loop.
    assert elapsed >= 3.0
    assert (os.times().user - cpu.user) + (os.times().system - cpu.system) < elapsed / 2


def test_a_long_lived_process_killed_is_replaced_at_once_even_after_quick_exits():
    watcher = Watcher("w", "/bin/sleep 1000")
    rec = WatcherRecorder(watcher)
    try:
        watcher.start()
        watcher.respawn_policy.quick_exits = 5  # as if earlier processes had crashed quickly
        wait_for(lambda: watcher.processes[watcher.pids[0]].age() >= 1.0, message="process older than 1 s")
        victim = watcher.pids[0]
        os.kill(victim, 9)
        wait_for(lambda: len(rec.of("spawn")) == 2, timeout=30, message="the replacement")
        assert watcher.respawn_policy.quick_exits == 0
    finally:
        watcher.stop()


def test_killing_long_running_processes_does_not_count_as_flapping():
    watcher = Watcher("many", "/bin/sleep 1000", numprocesses=3, flapping={**FAST, "window": 1.0})
    rec = WatcherRecorder(watcher)
    try:
        watcher.start()
        wait_for(lambda: all(p.age() >= 1.0 for p in watcher.processes.values()), message="processes older than 1 s")
        first, second = watcher.pids[:2]
        os.kill(first, 9)
        os.kill(second, 9)  # two exits within the window, but neither process was crash-looping
        wait_for(lambda: len(rec.of("spawn")) == 5, message="both replaced")
        assert watcher.status() == "active" and watcher.respawn_policy.tries == 0
        assert len(watcher.pids) == 3
    finally:
        watcher.stop()
