"""Crash-loop detection with Circus's flapping semantics, built into every watcher.

Circus leaves this to an optional plugin whose stop/start casts are often rejected by its global lock, so a crash
loop can spin forever. Here the rule runs inside the watcher on each unexpected exit: `attempts` exits within
`window` seconds mean the watcher is flapping; it is stopped and started again after `retry_in` seconds, at most
`max_retry` times in a row (-1: forever), after which it stays stopped until an operator starts it.

The window is measured on a clock that leaves out the pauses the watcher itself inserts between respawns (see
Watcher._respawn_pace): those grow up to 10 s, and counting them would spread a crash loop's exits beyond any window,
so a broken command would never be recognised and would be retried forever. Circus's plugin likewise subtracts its
own respawn delay (check_delay) from the measured span. Only the part of a pause that lies between the first and the
last exit counted is left out: another process may exit while the watcher is still pausing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gcircus.options import defaults

OK, BACKOFF, GIVE_UP = "ok", "backoff", "give_up"
SETTINGS = defaults("flapping")  # the fields a watcher's `flapping` options set, and their defaults (Circus's)


@dataclass
class CrashLoopGuard:
    """Counts unexpected exits of one watcher and says when to back off."""

    attempts: int = SETTINGS["attempts"]
    window: float = SETTINGS["window"]
    retry_in: float = SETTINGS["retry_in"]
    max_retry: int = SETTINGS["max_retry"]
    exits: list[float] = field(default_factory=list)
    tries: int = 0
    pauses: list[tuple[float, float]] = field(default_factory=list)  # (began, ended): waits left out of the window

    @classmethod
    def from_config(cls, conf: dict | None) -> CrashLoopGuard:
        """The guard for these `flapping` options; each value is converted to the type of its option's default."""
        return cls(**{key: type(SETTINGS[key])(value) for key, value in (conf or {}).items()
                      if key in SETTINGS and value is not None})

    def record_exit(self, when: float) -> str:
        """Record an unexpected exit at monotonic time `when`; return OK, BACKOFF or GIVE_UP."""
        self.exits.append(when)
        if len(self.exits) < max(1, self.attempts):
            return OK
        first, last = self.exits[0], self.exits[-1]
        paused = sum(max(0.0, min(ended, last) - max(began, first)) for began, ended in self.pauses)
        self.exits.clear()
        self.pauses.clear()
        if max(0.0, last - first - paused) > self.window:
            # Exits too far apart: not a crash loop. Start counting afresh, as Circus's plugin does.
            self.tries = 0
            return OK
        self.tries += 1
        if self.max_retry == -1 or self.tries <= self.max_retry:
            return BACKOFF
        self.tries = 0
        return GIVE_UP

    def record_pause(self, began: float, ended: float) -> None:
        """The watcher waited from `began` to `ended` (monotonic) before a respawn: not part of the crash loop's pace.

        Recorded once the wait is over, so an exit during it is not moved back by the part still to come.
        """
        if self.exits:  # a pause over before the first exit counted lies outside any span to come
            self.pauses.append((began, ended))

    def reset(self) -> None:
        """Forget history (an operator started the watcher by hand)."""
        self.exits.clear()
        self.pauses.clear()
        self.tries = 0
