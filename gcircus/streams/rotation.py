"""When and how file sinks rotate: the numbered chain of FileStream and the time schedule of TimedRotatingFileStream.

Both only move whole files with rename(2): the bytes in a rotated file are never copied or rewritten, so rotation
cannot lose or duplicate output. Deciding *between which records* to rotate is the sinks' job.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re

log = logging.getLogger(__name__)

# rotate_when -> (seconds per unit, strftime suffix of rotated files, regex of that suffix). Circus's formats.
_UNITS = {
    "S": (1, "%Y%m%d%H%M%S", r"\d{14}"),
    "M": (60, "%Y%m%d%H%M", r"\d{12}"),
    "H": (3600, "%Y%m%d%H", r"\d{10}"),
    "D": (86400, "%Y%m%d", r"\d{8}"),
    "MIDNIGHT": (86400, "%Y%m%d", r"\d{8}"),
    "W": (7 * 86400, "%Y%m%d", r"\d{8}"),
}
VALID_WHEN = ("S", "M", "H", "D", "MIDNIGHT", "W0", "W1", "W2", "W3", "W4", "W5", "W6")


def rotate_numbered(path: str, backup_count: int) -> None:
    """Shift `path.N-1 → path.N … path.1 → path.2`, then `path → path.1`; the oldest beyond backup_count is replaced.

    Each step is one atomic rename, and a missing link is skipped, so a chain interrupted by an error can simply be
    run again: files keep their order and none is overwritten before it has moved on.
    """
    directory, basename = os.path.split(os.path.abspath(path))
    prefix = basename + "."
    # One listdir instead of backup_count renames that mostly fail: a large backup_count stays cheap.
    present = sorted((int(name[len(prefix):]) for name in os.listdir(directory)
                      if name.startswith(prefix) and name[len(prefix):].isdigit()
                      and 0 < int(name[len(prefix):]) < backup_count), reverse=True)
    for source, target in [(f"{path}.{index}", f"{path}.{index + 1}") for index in present] + [(path, f"{path}.1")]:
        with contextlib.suppress(FileNotFoundError):
            os.replace(source, target)


class TimeSchedule:
    """The rollover times and rotated-file names for one `rotate_when` / `rotate_interval` / `utc` setting."""

    def __init__(self, rotate_when: str | None, rotate_interval: int = 1, utc: bool = False):
        if rotate_when is None:
            raise ValueError(f"TimedRotatingFileStream needs rotate_when, one of {', '.join(VALID_WHEN)} (any case)")
        when = str(rotate_when).strip().upper()
        if when not in VALID_WHEN:
            raise ValueError(f"invalid rotate_when {rotate_when!r}: expected one of {', '.join(VALID_WHEN)} (any case)")
        if rotate_interval < 1:
            raise ValueError(f"invalid rotate_interval {rotate_interval!r}: expected an integer >= 1")
        self.unit = "W" if when.startswith("W") else when
        self.weekday = int(when[1]) if self.unit == "W" else None
        seconds, self.suffix_format, suffix_pattern = _UNITS[self.unit]
        self.suffix_regex = re.compile(suffix_pattern)
        self.interval = rotate_interval
        self.seconds = seconds * rotate_interval
        self.utc = utc

    @property
    def calendar_based(self) -> bool:
        """MIDNIGHT and W* roll over at wall-clock midnights; S, M, H and D every interval after the file started."""
        return self.unit in ("MIDNIGHT", "W")

    def first_rollover(self, start: float) -> float:
        """The rollover time of a file whose period began at `start`."""
        if not self.calendar_based:
            return int(start) + self.seconds
        day = self._datetime(start).date() + datetime.timedelta(days=1)
        if self.weekday is not None:
            day += datetime.timedelta(days=(self.weekday - day.weekday()) % 7)
        days_per_period = 7 if self.weekday is not None else 1
        day += datetime.timedelta(days=days_per_period * (self.interval - 1))
        return self._midnight(day)

    def next_rollover(self, now: float) -> float:
        """The first rollover strictly after `now`, for the file opened by a rotation at `now`."""
        rollover = self.first_rollover(now)
        while rollover <= now:
            rollover += self.seconds
        return rollover

    def suffix(self, rollover_at: float) -> str:
        """The suffix naming the period that ends at `rollover_at` (by the period's start, as Circus does)."""
        if not self.calendar_based:
            return self._datetime(rollover_at - self.seconds).strftime(self.suffix_format)
        days = (7 if self.weekday is not None else 1) * self.interval
        start = self._datetime(rollover_at).date() - datetime.timedelta(days=days)
        return start.strftime(self.suffix_format)

    def is_rotated_name(self, basename: str, candidate: str) -> bool:
        """Whether `candidate` is a file this schedule produced for `basename`."""
        prefix = basename + "."
        return candidate.startswith(prefix) and self.suffix_regex.fullmatch(candidate[len(prefix):]) is not None

    def _datetime(self, timestamp: float) -> datetime.datetime:
        if self.utc:
            return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
        return datetime.datetime.fromtimestamp(timestamp)

    def _midnight(self, day: datetime.date) -> float:
        tz = datetime.timezone.utc if self.utc else None
        return datetime.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def expired_backups(path: str, schedule: TimeSchedule, backup_count: int) -> list[str]:
    """The time-rotated files of `path` beyond the newest `backup_count` (none when backup_count is 0)."""
    if backup_count <= 0:
        return []
    directory, basename = os.path.split(os.path.abspath(path))
    rotated = sorted(name for name in os.listdir(directory) if schedule.is_rotated_name(basename, name))
    return [os.path.join(directory, name) for name in rotated[:max(0, len(rotated) - backup_count)]]
