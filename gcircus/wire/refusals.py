"""Log lines for refused connections, bounded: a zmq client whose key is refused reconnects every 100 ms forever.

Each kind of refusal (the same reason from the same peer on the same endpoint) is logged at once the first time,
then at most once per interval with the number of refusals not logged meanwhile. The table of kinds is bounded too,
so many peers cannot grow it without limit.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Hashable

INTERVAL = 60.0  # seconds between two log lines about the same kind of refusal
MAX_KINDS = 1024  # kinds remembered; past that the oldest are forgotten (and logged again if they come back)


class RefusalLog:
    """Logs refusals on `logger` at WARNING, each kind at most once per `interval` seconds."""

    def __init__(self, logger: logging.Logger, interval: float = INTERVAL, max_kinds: int = MAX_KINDS):
        self.logger = logger
        self.interval = interval
        self.max_kinds = max_kinds
        self.count = 0  # every refusal, logged or not
        self._kinds: dict[Hashable, list] = {}  # kind -> [time last logged, refusals since], oldest first

    def refused(self, kind: Hashable, message: str, *args) -> None:
        """One refusal: logged now (`message % args`), or counted until its kind may be logged again."""
        self.count += 1
        now = time.monotonic()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return
        suppressed = seen[1] if seen is not None else 0
        self._kinds.pop(kind, None)
        while len(self._kinds) >= self.max_kinds:
            del self._kinds[next(iter(self._kinds))]
        self._kinds[kind] = [now, 0]
        if suppressed:
            message += " (and %d more times since the last report)"
            args = (*args, suppressed)
        self.logger.warning(message, *args)
