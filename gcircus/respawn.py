"""One watcher's respawn policy: when what exited, failed to spawn or never became ready is tried again, and when the
watcher gives up. One object owns all of it, so the pacing of quick exits, the crash-loop back-off and the
spawn-failure back-off cannot disagree about where a watcher stands.

- Pacing: a process that exits within QUICK_EXIT seconds of its spawn is replaced after 0, 0, 0.1, 0.2, 0.4... up to
  MAX_RESPAWN_DELAY seconds, also with check_flapping off: a broken command never makes the hub spin.
- Crash loop (Circus's flapping rule, with its options and defaults): `attempts` quick exits within `window` seconds
  make the watcher stop and retry after `retry_in` seconds, at most `max_retry` times in a row (-1: forever); then
  it is `failed`. With Circus's defaults (2 exits in 1 s, retry in 7 s, 5 retries) a crash loop is failed in ~40 s.
  The window is measured on a clock that leaves out the pacing pauses: those grow up to 10 s, and counting them
  would spread a crash loop's exits beyond any window (Circus's plugin likewise subtracts its own check_delay).
  Only the part of a pause that lies between the first and the last exit counted is left out.
- Spawn failures: retried after 0.1, 0.2, 0.4... up to MAX_RESPAWN_DELAY seconds; the watcher's `max_retry`
  failed attempts in a row (-1: forever) make it `failed`. A transient failure (gcircusd short of fds, processes or
  memory) says nothing about the command: it is retried the same way but never counts toward giving up.
- A process that does not become ready within ready_timeout counts as a crash (however long it lived).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from gcircus.options import defaults

log = logging.getLogger(__name__)

RETRY, BACK_OFF, GIVE_UP = "retry", "backoff", "give_up"
SETTINGS = defaults("flapping")  # the fields a watcher's `flapping` options set, and their defaults (Circus's)
QUICK_EXIT = 1.0  # a process that exits sooner than this after its spawn counts toward respawn pacing
MAX_RESPAWN_DELAY = 10.0
QUIET_AFTER = 3  # consecutive quick exits logged at info level before switching to debug


@dataclass(frozen=True)
class Decision:
    """What to do next: RETRY (respawn after `delay` s), BACK_OFF (stop, start again after `delay` s) or GIVE_UP."""

    action: str
    delay: float = 0.0
    reason: str = ""


@dataclass
class RespawnPolicy:
    """The pacing, crash-loop and spawn-failure state of one watcher, and the decisions drawn from it."""

    name: str = ""
    attempts: int = SETTINGS["attempts"]
    window: float = SETTINGS["window"]
    retry_in: float = SETTINGS["retry_in"]
    max_retry: int = SETTINGS["max_retry"]  # crash-loop back-offs before failing (flapping.max_retry)
    check_flapping: bool = True
    spawn_max_retry: int = 5  # the watcher's max_retry: spawn attempts before failing
    tries: int = 0  # crash-loop back-offs in a row
    quick_exits: int = 0  # consecutive processes that exited within QUICK_EXIT
    spawn_failures: int = 0  # consecutive failed spawns, transient ones included (for the delay and the log)
    failed_spawns: int = 0  # consecutive failed spawns that count toward giving up
    retry_at: float | None = None  # wall-clock time of the planned retry while backing off
    endless: bool = False  # whether the last back-off decided can never end in failure (max_retry -1, transient)
    exits: list[float] = field(default_factory=list)
    pauses: list[tuple[float, float]] = field(default_factory=list)  # (began, ended): waits left out of the window

    @classmethod
    def of(cls, name: str, flapping: dict | None, check_flapping: bool = True, max_retry: int = 5) -> RespawnPolicy:
        """The policy for these options; each `flapping` value is converted to the type of its option's default."""
        policy = cls(name=name, check_flapping=check_flapping, spawn_max_retry=max_retry)
        policy.configure(flapping or {})
        return policy

    def configure(self, flapping: dict) -> None:
        """Apply `flapping` options (a live `set`): the counters stay, the next decision uses the new values."""
        for key, value in flapping.items():
            if key in SETTINGS and value is not None:
                setattr(self, key, type(SETTINGS[key])(value))

    # -- decisions -------------------------------------------------------------------------------------------------

    def process_exited(self, lived: float, now: float | None = None) -> Decision:
        """A process exited on its own after living `lived` seconds: respawn (when), back off, or fail."""
        delay = self._pace(lived)
        # Only processes that die soon after their spawn make a crash loop: a long-running worker that is killed
        # must not take its healthy siblings down with it.
        if self.check_flapping and lived < max(self.window, QUICK_EXIT):
            return self._crashed(time.monotonic() if now is None else now) or Decision(RETRY, delay)
        return Decision(RETRY, delay)

    def start_failed(self, now: float | None = None) -> Decision:
        """A process did not become ready in time: a crash for the back-off, whatever its age."""
        self.quick_exits += 1
        crash = self._crashed(time.monotonic() if now is None else now) if self.check_flapping else None
        return crash or Decision(RETRY, self._pace_delay())

    def spawn_failed(self, transient: bool) -> Decision:
        """A spawn attempt failed: retry after a growing delay, or fail after max_retry counted attempts."""
        self.spawn_failures += 1
        self.endless = transient or self.spawn_max_retry == -1
        if not transient:
            self.failed_spawns += 1
            if self.spawn_max_retry != -1 and self.failed_spawns >= max(1, self.spawn_max_retry):
                return Decision(GIVE_UP, reason=f"{self.failed_spawns} spawn attempts failed")
        return Decision(RETRY, self.spawn_delay())

    def spawned(self) -> int:
        """A spawn succeeded: the spawn-failure count starts again. Returns how many attempts had failed before."""
        failures, self.spawn_failures, self.failed_spawns = self.spawn_failures, 0, 0
        return failures

    def spawn_delay(self) -> float:
        """Delay before the next spawn attempt after consecutive failures: 0.1 s, 0.2 s... up to MAX_RESPAWN_DELAY."""
        return min(0.05 * 2 ** min(self.spawn_failures, 16), MAX_RESPAWN_DELAY)  # 2 ** 1100 is no float

    def _crashed(self, now: float) -> Decision | None:
        """Record a crash at monotonic `now`; a BACK_OFF or GIVE_UP decision when it completes a crash loop."""
        self.exits.append(now)
        if len(self.exits) < max(1, self.attempts):
            return None
        first, last = self.exits[0], self.exits[-1]
        paused = sum(max(0.0, min(ended, last) - max(began, first)) for began, ended in self.pauses)
        self.exits.clear()
        self.pauses.clear()
        if max(0.0, last - first - paused) > self.window:
            self.tries = 0  # exits too far apart: not a crash loop. Count afresh, as Circus's plugin does.
            return None
        self.tries += 1
        self.endless = self.max_retry == -1
        crashes = f"{self.attempts} exits within {self.window:g}s"
        if self.max_retry == -1 or self.tries <= self.max_retry:
            return Decision(BACK_OFF, self.retry_in, crashes)
        return Decision(GIVE_UP, reason=f"{crashes}, after {self.max_retry} back-offs")

    def _pace(self, lived: float) -> float:
        if lived >= QUICK_EXIT:
            self.quick_exits = 0
            return 0.0
        self.quick_exits += 1
        if self.quick_exits == QUIET_AFTER + 1:
            log.warning("watcher %r: processes keep exiting within %gs of starting; respawning with a growing delay"
                        " (up to %gs); further exits are logged at debug level", self.name, QUICK_EXIT,
                        MAX_RESPAWN_DELAY)
        return self._pace_delay()

    def _pace_delay(self) -> float:
        if self.quick_exits < 2:
            return 0.0
        return min(0.1 * 2 ** min(self.quick_exits - 2, 16), MAX_RESPAWN_DELAY)  # 2 ** 1100 is no float

    @property
    def quiet(self) -> bool:
        """Whether exits are now logged at debug level (a long run of quick exits)."""
        return self.quick_exits > QUIET_AFTER

    # -- bookkeeping -----------------------------------------------------------------------------------------------

    def record_pause(self, began: float, ended: float) -> None:
        """The watcher waited from `began` to `ended` (monotonic) before a respawn: not part of the crash loop's pace.

        Recorded once the wait is over, so an exit during it is not moved back by the part still to come.
        """
        if self.exits:  # a pause over before the first exit counted lies outside any span to come
            self.pauses.append((began, ended))

    def backing_off(self, delay: float) -> None:
        self.retry_at = time.time() + delay

    def retrying(self) -> None:
        """The watcher starts again after a back-off: its processes respawn at full pace; the crash-loop history
        and the spawn failures (whose delay keeps growing) are kept."""
        self.retry_at = None
        self.quick_exits = 0

    def reset(self) -> None:
        """Forget everything (an operator started the watcher by hand)."""
        self.exits.clear()
        self.pauses.clear()
        self.tries = self.quick_exits = self.spawn_failures = self.failed_spawns = 0
        self.retry_at = None

    def describe(self) -> dict:
        """Where the watcher stands, for `procs` and status texts."""
        return {"backoffs": self.tries, "max_backoffs": self.max_retry, "retry_at": self.retry_at,
                "spawn_failures": self.spawn_failures}
